#!/usr/bin/python3
"""The whole 512x512 inpaint job in PyTorch, for docs/performance.md's comparison with inpaint-run.

One process does what `inpaint-run` does: load a checkpoint of the paper's UNet (8 levels,
width 64, 32.9 M parameters), decode the photo and the mask (PIL), run the forward pass in eval
mode, de-normalise, compose and encode a PNG. The model is written the lean way (each tensor's
mask one channel, the window counts box sums), not as popular re-implementations do it (a full
convolution of a C-channel mask, as many flops again): the fairest PyTorch to race. Time it from
outside, beside inpaint-run on a checkpoint of the same shapes (`inpaint-bench --write-checkpoint`):

  make DIR    DIR/model.pt (random-init weights, 131 MB) and a 512x512 photo + mask
  job DIR OUT.png

Needs Debian's python3-torch, python3-pil and python3-numpy; optional (the product needs no Python).
"""
import os
import sys

import numpy as np
from PIL import Image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# (C_in, C_out, k, BatchNorm) of the encoder (stride 2, ReLU); (C_in, C_out) of the decoder
# (nearest x2, concat with the skip, 3x3, BatchNorm + LeakyReLU(0.2) but the last): PAPER.md.
ENC = [(3, 64, 7, False), (64, 128, 5, True), (128, 256, 5, True)] + [(256, 512, 3, True)] + [(512, 512, 3, True)] * 4
DEC = [(1024, 512)] * 4 + [(768, 256), (384, 128), (192, 64), (67, 3)]


def build():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class PConv(nn.Module):
        def __init__(self, cin, cout, k, stride):
            super().__init__()
            self.k, self.s, self.full = k, stride, float(cin * k * k)
            self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
            self.bias = nn.Parameter(torch.zeros(cout))

        def forward(self, xs, ms):
            xm = torch.cat([x * m for x, m in zip(xs, ms)], 1)
            count = sum(F.avg_pool2d(m, self.k, self.s, self.k // 2, divisor_override=1) * x.shape[1]
                        for x, m in zip(xs, ms))
            valid = (count > 0).float()
            out = self.conv(xm) * (self.full / count.clamp(min=1.0) * valid) + self.bias.view(1, -1, 1, 1) * valid
            return out, valid

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([PConv(ci, co, k, 2) for ci, co, k, _ in ENC])
            self.enc_bn = nn.ModuleList([nn.BatchNorm2d(co) if bn else nn.Identity() for _, co, _, bn in ENC])
            self.dec = nn.ModuleList([PConv(ci, co, 3, 1) for ci, co in DEC])
            self.dec_bn = nn.ModuleList([nn.BatchNorm2d(co) for _, co in DEC[:-1]] + [nn.Identity()])

        def forward(self, x, m):
            skips = [(x, m)]
            for conv, bn in zip(self.enc, self.enc_bn):
                x, m = conv([x], [m])
                x = F.relu(bn(x))
                skips.append((x, m))
            for i, (conv, bn) in enumerate(zip(self.dec, self.dec_bn)):
                sx, sm = skips[len(self.dec) - 1 - i]
                x = F.interpolate(x, scale_factor=2.0, mode='nearest')
                m = F.interpolate(m, scale_factor=2.0, mode='nearest')
                x, m = conv([x, sx], [m, sm])
                if i < len(self.dec) - 1:
                    x = F.leaky_relu(bn(x), 0.2)
            return x

    return UNet()


def make(folder):
    import torch
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build().state_dict(), os.path.join(folder, 'model.pt'))
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:512, 0:512]
    img = np.stack([(xx * 255) // 511, (yy * 255) // 511, rng.integers(0, 256, (512, 512))], -1).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(folder, 'image.png'))
    hole = ((xx - 256) ** 2 + (yy - 200) ** 2 < 90 ** 2) | (np.abs(xx - yy) < 25)
    Image.fromarray((hole * 255).astype(np.uint8)).save(os.path.join(folder, 'mask.png'))  # white = hole


def job(folder, out_png):
    import torch
    torch.set_num_threads(os.cpu_count())
    net = build()
    net.load_state_dict(torch.load(os.path.join(folder, 'model.pt'), map_location='cpu'))
    net.eval()
    img = np.array(Image.open(os.path.join(folder, "image.png")).convert("RGB"))
    known = (np.asarray(Image.open(os.path.join(folder, 'mask.png')).convert('L')) < 128).astype(np.float32)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    m = torch.from_numpy(known).view(1, 1, 512, 512)
    with torch.no_grad():
        out = net((x - mean) / std * m, m)
    rgb = (torch.clamp(out * std + mean, 0, 1)[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(np.where(known[..., None] > 0, img, rgb)).save(out_png)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'make':
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == 'job':
        job(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
