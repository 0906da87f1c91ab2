#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets into tests/fuzz/corpus/<target>/seed-*.

Small valid files of every kind the loaders accept, so the fuzzers start from deep inside the
formats instead of guessing magic numbers. The committed corpus holds these seeds plus what the
fuzzers found (scripts/fuzz merges it back); run this again only to change the seeds.
Needs Debian's python3-pil (for JPEG, BMP and TGA variants); stdlib otherwise.
    /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import base64
import io
import json
import os
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


# ---- safetensors

DTYPE_SIZE = {"F32": 4, "F64": 8, "BF16": 2, "F16": 2, "I64": 8}


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape); data are small counting bytes."""
    header, data = {}, b""
    for name, dtype, shape in tensors:
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((i * 37 + 11) % 256 for i in range(n))
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


# ---- PConvUNet checkpoints (models/pconv_unet.cpp's layer table)

def unet_state(levels, width, in_channels=3):
    def channels(n):
        return width * min(2 ** min(n - 1, 3), 8)

    layers = []
    for n in range(1, levels + 1):
        cin = in_channels if n == 1 else channels(n - 1)
        k = 7 if n == 1 else 5 if n <= 3 else 3
        layers.append((cin, channels(n), k, n > 1))
    for n in range(levels + 1, 2 * levels + 1):
        s = 2 * levels - n
        skip = in_channels if s == 0 else channels(s)
        layers.append((channels(s + 1) + skip, skip, 3, s != 0))
    tensors = []
    for i, (cin, cout, k, bn) in enumerate(layers, 1):
        tensors.append((f"pconv{i}.weight", "F32", [cout, cin, k, k]))
        if bn:
            for b in ("weight", "bias", "running_mean", "running_var"):
                tensors.append((f"pconv{i}.bn.{b}", "F32", [cout]))
        else:
            tensors.append((f"pconv{i}.bias", "F32", [cout]))
    return tensors


def config(levels, width, in_channels=3):
    return json.dumps({"in_channels": in_channels, "levels": levels, "width": width}, separators=(",", ":"))


# ---- images

def image_bytes(img, fmt, **options):
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def gradient(mode, w, h):
    img = Image.new("RGBA", (w, h))
    img.putdata([((x * 40) % 256, (y * 60) % 256, (x * y * 9) % 256, 255 if (x + y) % 3 else 0)
                 for y in range(h) for x in range(w)])
    return img.convert(mode)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_16bit_rgb(w, h):
    raw = b"".join(b"\x00" + b"".join(struct.pack(">HHH", x * 4000, y * 5000, 999) for x in range(w)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def images():
    seeds = {
        "rgb.png": image_bytes(gradient("RGB", 7, 5), "PNG"),
        "rgba.png": image_bytes(gradient("RGBA", 6, 4), "PNG"),
        "grey.png": image_bytes(gradient("L", 5, 3), "PNG"),
        "grey-alpha.png": image_bytes(gradient("LA", 4, 4), "PNG"),
        "palette.png": image_bytes(gradient("RGB", 8, 3).convert("P", palette=Image.ADAPTIVE, colors=4), "PNG"),
        "1bit.png": image_bytes(gradient("1", 9, 2), "PNG"),
        "16bit.png": png_16bit_rgb(3, 2),
        "baseline.jpg": image_bytes(gradient("RGB", 16, 8), "JPEG", quality=50),
        "progressive.jpg": image_bytes(gradient("RGB", 9, 17), "JPEG", quality=50, progressive=True),
        "grey.jpg": image_bytes(gradient("L", 8, 8), "JPEG", quality=50),
        "subsampled.jpg": image_bytes(gradient("RGB", 17, 9), "JPEG", quality=30, subsampling=2),
        "rgb.bmp": image_bytes(gradient("RGB", 5, 3), "BMP"),
        "palette.bmp": image_bytes(gradient("RGB", 4, 4).convert("P", palette=Image.ADAPTIVE, colors=4), "BMP"),
        "rgb.tga": image_bytes(gradient("RGB", 5, 2), "TGA"),
        "rgba-rle.tga": image_bytes(gradient("RGBA", 6, 3), "TGA", compression="tga_rle"),
        "grey.tga": image_bytes(gradient("L", 3, 3), "TGA"),
    }
    return seeds


def serve_bodies():
    def b64(img, prefix=""):
        return prefix + base64.b64encode(image_bytes(img, "PNG")).decode()
    photo = gradient("RGB", 24, 16)
    mask = Image.new("L", (24, 16), 0)
    for x, y in [(3, 3), (4, 3), (4, 4), (15, 9), (16, 9), (20, 12)]:
        mask.putpixel((x, y), 255)
    bodies = {
        "crop.json": {"image": b64(photo), "mask": b64(mask), "hd_strategy": "Crop",
                      "hd_strategy_crop_margin": 4, "hd_strategy_crop_trigger_size": 8},
        "resize.json": {"image": b64(photo, "data:image/png;base64,"), "mask": b64(mask),
                        "hd_strategy": "Resize", "hd_strategy_resize_limit": 12, "sd_steps": 20},
        "original.json": {"image": b64(gradient("RGBA", 24, 16)), "mask": b64(mask.convert("RGB")),
                          "hd_strategy": "Original"},
        "defaults.json": {"image": b64(photo), "mask": b64(mask)},
    }
    return {name: json.dumps(body).encode() for name, body in bodies.items()}


def main():
    # The safetensors reader: every dtype, metadata, empty tensors, scalars.
    write("fuzz_safetensors", "f32", safetensors([("x", "F32", [2, 3])]))
    write("fuzz_safetensors", "dtypes", safetensors(
        [("a", "F64", [2]), ("b", "BF16", [3]), ("c", "F16", [1, 2]), ("d", "I64", []), ("e", "F32", [0, 4])],
        {"step": "12", "note": "seed"}))
    write("fuzz_safetensors", "metadata-only", safetensors([], {"pconv.config": config(1, 1)}))

    # Checkpoints: the smallest models with and without their configuration, and a training
    # checkpoint with Adam's state and the metadata inpaint-train writes.
    write("fuzz_checkpoint", "1-level", safetensors(unet_state(1, 1), {"pconv.config": config(1, 1)}))
    write("fuzz_checkpoint", "2-level", safetensors(unet_state(2, 2), {"pconv.config": config(2, 2)}))
    write("fuzz_checkpoint", "no-config", safetensors(unet_state(1, 2)))
    train = unet_state(1, 1)
    train += [("optim." + n + ".m", d, s) for n, d, s in unet_state(1, 1)]
    train += [("optim.step", "I64", [])]
    write("fuzz_checkpoint", "training", safetensors(train, {
        "pconv.config": config(1, 1), "train.step": "40", "train.phase": "train", "train.lr": "0.0002",
        "train.data_state": "seed=7 epoch=2 position=3", "train.data_count": "6",
        "train.options": json.dumps({"size": 32, "batch": 2, "levels": 1, "width": 1})}))

    # Images, and the same files as masks (the first byte picks the convention).
    for name, data in images().items():
        write("fuzz_image", name, data)
        write("fuzz_mask", name, b"\x00" + data)
    write("fuzz_mask", "black-holes.png", b"\x01" + image_bytes(gradient("L", 6, 6), "PNG"))

    # inpaint-serve's POST /api/v1/inpaint bodies: every HD strategy, the data: prefix, RGBA.
    for name, body in serve_bodies().items():
        write("fuzz_serve", name, body)


if __name__ == "__main__":
    main()
