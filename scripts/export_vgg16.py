#!/usr/bin/env python3
"""Export torchvision's ImageNet VGG-16 convolutional weights for pconv's perceptual/style loss.

Writes the `features.*` tensors of torchvision.models.vgg16(weights=IMAGENET1K_V1) to a
safetensors file in torchvision's own naming (features.0.weight, ..., features.28.bias),
which `VGG16Features::load_torchvision` reads (it uses features.0 to features.14, the layers up
to pool3, and ignores the rest). Needs PyTorch and torchvision; uses the `safetensors`
package when installed, else writes the format directly (8-byte little-endian header length,
JSON header, raw little-endian data).

    python3 scripts/export_vgg16.py vgg16_features.safetensors [--pool3-only]
"""
import argparse
import array
import json
import os
import struct
import sys


def write_safetensors(path, tensors, metadata):
    """The safetensors format by hand: tensors is {name: contiguous float32 CPU torch tensor}."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        values = array.array("f", tensors[name].flatten().tolist())  # no numpy needed
        if sys.byteorder == "big":
            values.byteswap()
        data = values.tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--pool3-only", action="store_true",
                        help="keep only features.0-14 (what pconv uses): 6.9 MB instead of 59 MB")
    args = parser.parse_args()

    try:
        import torch
        import torchvision
    except ImportError as e:
        sys.exit("export_vgg16: needs PyTorch and torchvision (%s)" % e)

    model = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    tensors = {}
    for name, value in model.state_dict().items():
        if not name.startswith("features."):
            continue
        if args.pool3_only and int(name.split(".")[1]) > 14:
            continue
        tensors[name] = value.detach().to(torch.float32).contiguous().cpu()
    metadata = {"source": "torchvision.models.vgg16 IMAGENET1K_V1",
                "input": "ImageNet-normalised RGB: mean 0.485/0.456/0.406, std 0.229/0.224/0.225"}

    try:
        from safetensors.torch import save_file
    except ImportError:
        write_safetensors(args.output, tensors, metadata)
    else:
        save_file(tensors, args.output, metadata=metadata)
    total = sum(t.numel() for t in tensors.values())
    print("export_vgg16: wrote %d tensors (%d parameters) to %s" % (len(tensors), total, args.output))


if __name__ == "__main__":
    main()
