#!/usr/bin/python3
"""Writes the seed inputs of fuzz_http into tests/fuzz/corpus/fuzz_http/seed-*.

Each input is one byte (how the fuzz target splits the body into reads) and one request as
clients send it: curl, browsers' fetch and FormData, IOPaint's web app, Krita's and
darktable's plugins; Content-Length, chunked and multipart bodies, and a few malformed heads.
Stdlib only:
    /usr/bin/python3 tests/fuzz/make_http_seeds.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDER = os.path.join(HERE, "corpus", "fuzz_http")

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def head(method, target, headers, version="HTTP/1.1"):
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def with_length(method, target, headers, body):
    return head(method, target, headers + [("Content-Length", str(len(body)))]) + body


def chunked(method, target, headers, pieces, trailer=b""):
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailer + b"\r\n"
    return head(method, target, headers + [("Transfer-Encoding", "chunked")]) + body


def multipart(boundary, parts):
    out = b""
    for disposition, content_type, data in parts:
        out += b"--" + boundary + b"\r\nContent-Disposition: form-data; " + disposition + b"\r\n"
        if content_type:
            out += b"Content-Type: " + content_type + b"\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def main():
    os.makedirs(FOLDER, exist_ok=True)
    host = [("Host", "127.0.0.1:8080")]
    request_json = json.dumps({"image": "data:image/png;base64,AAAA", "mask": "AAAA", "hd_strategy": "Crop"}).encode()
    form = multipart(b"----WebKitFormBoundary7MA4YWxkTrZu0gW", [
        (b'name="image"; filename="photo.png"', b"image/png", PNG),
        (b'name="mask"; filename="mask.png"', b"image/png", PNG),
        (b'name="hd_strategy"', None, b"Original"),
    ])
    seeds = {
        "get": head("GET", "/api/v1/server-config", host + [("Accept", "*/*"), ("User-Agent", "curl/7.88.1")]),
        "head-1.0": head("HEAD", "/?x=1&y", [("Connection", "close")], "HTTP/1.0"),
        "preflight": head("OPTIONS", "/api/v1/inpaint", host + [("Origin", "http://localhost:3000"),
                                                               ("Access-Control-Request-Method", "POST")]),
        "json": with_length("POST", "/api/v1/inpaint", host + [("Content-Type", "application/json")], request_json),
        "expect": with_length("POST", "/api/v1/inpaint", host + [("Expect", "100-continue"),
                                                                ("Content-Type", "application/json")], request_json),
        "chunked": chunked("POST", "/api/v1/inpaint", host + [("Content-Type", "application/json")],
                           [request_json[:20], request_json[20:]]),
        "chunked-ext": chunked("POST", "/api/v1/adjust_mask", host, [b"{}"], b"X-Trailer: 1\r\n").replace(
            b"2\r\n{}", b"2;name=value\r\n{}"),
        "multipart": with_length("POST", "/api/v1/inpaint", host + [
            ("Content-Type", "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW")], form),
        "multipart-chunked": chunked("POST", "/api/v1/save_image", host + [
            ("Content-Type", 'multipart/form-data; charset=utf-8; boundary="b\\"q"')],
            [multipart(b'b"q', [(b'name="file"; filename="out.png"', b"image/png", PNG)])]),
        "multipart-open": with_length("POST", "/api/v1/gen-info", host + [("Content-Type", "multipart/form-data; boundary=x")],
                                      b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno end"),
        "both-lengths": head("POST", "/", [("Content-Length", "4"), ("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n",
        "folded": b"GET / HTTP/1.1\r\nX-A: 1\r\n continued\r\n\r\n",
        "gzip": head("POST", "/", [("Transfer-Encoding", "gzip")]),
    }
    for i, (name, data) in enumerate(sorted(seeds.items())):
        with open(os.path.join(FOLDER, "seed-" + name), "wb") as f:
            f.write(bytes([i * 37 % 256]) + data)


if __name__ == "__main__":
    main()
