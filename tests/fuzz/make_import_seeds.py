#!/usr/bin/python3
"""Writes the seed inputs of the import fuzz targets (fuzz_pickle, fuzz_zip, fuzz_torch_import)
into tests/fuzz/corpus/<target>/seed-*, from tests/data/import/ (PyTorch's own files, each known
layout in both torch.save formats where they fit the fuzzers' 64 KiB) and a few crafted files:
a zip whose entry claims 4,000,000,000 bytes, a deflated entry, a legacy view. Stdlib only.
    /usr/bin/python3 tests/fuzz/make_import_seeds.py
"""
import io
import os
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
DATA = os.path.join(HERE, "..", "data", "import")
MAX_LEN = 65536


def write(target, name, data):
    assert len(data) <= MAX_LEN, (target, name, len(data))
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def read(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


# {'w': _rebuild_tensor_v2(storage 'k' of 4 floats, 0, (4,), (1,))}: the object pickle of both formats.
OBJECT = (b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
          b"ctorch\nFloatStorage\nX\x01\x00\x00\x00kX\x03\x00\x00\x00cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89"
          b"ccollections\nOrderedDict\n)RtRu.")
FLOATS = struct.pack("<4f", 0, 1, 2, 3)


def tiny_zip(method):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        z.writestr("a/data.pkl", OBJECT)
        z.writestr("a/byteorder", b"little")
        z.writestr("a/data/k", FLOATS)
    return out.getvalue()


def claims_4gb():
    """140 bytes: a stored a/data.pkl whose headers declare 4,000,000,000 bytes."""
    data = OBJECT[:22]
    name = b"a/data.pkl"
    common = struct.pack("<HHHHHIIIHH", 20, 0, 0, 0, 0x21, 0, len(data), 4_000_000_000, len(name), 0)
    local = struct.pack("<I", 0x04034B50) + common + name + data
    central = struct.pack("<IH", 0x02014B50, 20) + common + struct.pack("<HHHII", 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def legacy(obj):
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    protocol = b"\x80\x02M\xe9\x03."
    sys_info = b"\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u."
    return magic + protocol + sys_info + obj + b"\x80\x02]X\x01\x00\x00\x00ka." + struct.pack("<q", 4) + FLOATS


def main():
    small = [n for n in sorted(os.listdir(DATA)) if n.endswith(".pth") and os.path.getsize(os.path.join(DATA, n)) <= MAX_LEN]
    for n in small:
        write("fuzz_torch_import", n, read(n))
    for n in ("naoto_zip.pth", "nvidia_zip.pth", "evil_zip.pth"):
        with zipfile.ZipFile(os.path.join(DATA, n)) as z:
            pkl = [i for i in z.namelist() if i.endswith("/data.pkl")][0]
            write("fuzz_pickle", n + ".data.pkl", z.read(pkl))
    for n in ("evil_zip.pth", "nvidia_zip.pth"):
        write("fuzz_zip", n, read(n))
    for n in ("early_legacy.pth", "evil_legacy.pth"):
        write("fuzz_pickle", n, read(n))  # five pickles in a row, then storages
    view = OBJECT.replace(b"K\x04tQK\x00", b"K\x04(X\x01\x00\x00\x00kK\x01K\x02ttQK\x01")
    for target in ("fuzz_zip", "fuzz_torch_import"):
        write(target, "tiny-stored.pth", tiny_zip(zipfile.ZIP_STORED))
        write(target, "tiny-deflated.pth", tiny_zip(zipfile.ZIP_DEFLATED))
        write(target, "claims-4gb.pth", claims_4gb())
    write("fuzz_torch_import", "tiny-legacy.pth", legacy(OBJECT))
    write("fuzz_torch_import", "legacy-view.pth", legacy(view))
    write("fuzz_pickle", "object", OBJECT)
    write("fuzz_pickle", "view", view)


if __name__ == "__main__":
    main()
