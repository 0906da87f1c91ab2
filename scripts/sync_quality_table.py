#!/usr/bin/env python3
"""Copies data/model/quality.md (written by scripts/quality-bar) over the copies of that table
in README.md and data/model/MODEL_CARD.md, so the three never disagree.

A copy is found by the first three cells of quality.md's header row ("| size | hole ratio | n |"),
so a table that gained columns (such as the hole detail) still replaces its older copy;
the table lines from there (up to the first line not starting with '|') are replaced. A
document without such a header row is an error: the table was renamed or removed by hand, and
a silent skip would leave stale numbers.
  scripts/sync_quality_table.py QUALITY_MD DOC...
"""
import os
import sys


def sync(table_lines, doc_path):
    with open(doc_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    key = "|".join(table_lines[0].split("|")[:4]) + "|"  # "| size | hole ratio | n |"
    starts = [i for i, line in enumerate(lines)
              if line.startswith(key) and i + 1 < len(lines) and lines[i + 1].startswith("|---")]
    if len(starts) != 1:
        sys.exit(f"sync_quality_table: {doc_path} has {len(starts)} copies of the quality table "
                 f"(a header row starting '{key}'), expected 1")
    start = end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = table_lines
    tmp = doc_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, doc_path)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: scripts/sync_quality_table.py QUALITY_MD DOC...")
    with open(sys.argv[1], encoding="utf-8") as f:
        table = [line for line in f.read().split("\n") if line.startswith("|")]
    if len(table) < 3:
        sys.exit(f"sync_quality_table: {sys.argv[1]} holds no table")
    for doc in sys.argv[2:]:
        sync(table, doc)


if __name__ == "__main__":
    main()
