#!/usr/bin/python3
"""PyTorch references for inpaint-import: PConv UNets laid out as the checkpoints people have.

Re-implementations (written for pconv from the published descriptions, not copied) of
  * naoto0804/pytorch-inpainting-with-partial-conv, net.py: PCBActiv blocks of a
    PartialConv (input_conv + all-ones mask_conv; out = (conv(x*m) - b) / sum(M) + b,
    0 where sum(M) = 0) with BatchNorm and ReLU / LeakyReLU(0.2), PConvUNet(layer_size):
    enc_1 7x7/2 (no BN), enc_2-3 5x5/2, enc_4.. 3x3/2, dec_N = nearest x2 upsampling,
    concat [h, h_enc_{N-1}], 3x3 PConv, BN, LeakyReLU; dec_1 without BN/activation.
    Channels 64, 128, 256, 512, 512, ... ; `width` scales them (width 64 is the original).
    Biases: "current" has only dec_1's; "early" (conv.conv2d / conv.mask2d) has them everywhere.
  * the same UNet built on NVIDIA's partialconv PartialConv2d (multi_channel=True, return_mask):
    out = (conv(x*m) - b) * C_in*k*k / (sum(M) + 1e-8) + b, times [sum(M) > 0].

Commands (use Debian's /usr/bin/python3 with python3-torch and python3-pil):
  generate OUT_DIR   the small files tests/data/import/ holds (tests/test_import.cpp)
  check BUILD_DIR    the full-size check: a 7-level width-64 naoto0804 model, both formats,
                     inpaint-import + inpaint-run against PyTorch on a 256x256 photo
"""
import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ----------------------------------------------------------------------------- layers

class NaotoPartialConv(nn.Module):
    """naoto0804's partial convolution; `early` names its convs conv2d/mask2d (both with bias)."""

    def __init__(self, cin, cout, k, stride, pad, bias, early=False):
        super().__init__()
        self.early = early
        conv = nn.Conv2d(cin, cout, k, stride, pad, bias=bias or early)
        mask = nn.Conv2d(cin, cout, k, stride, pad, bias=early)
        nn.init.kaiming_normal_(conv.weight, a=0, mode='fan_in')
        nn.init.constant_(mask.weight, 1.0)
        if early:
            nn.init.constant_(mask.bias, 0.0)
        for p in mask.parameters():
            p.requires_grad = False
        if early:
            self.conv2d, self.mask2d = conv, mask
        else:
            self.input_conv, self.mask_conv = conv, mask

    def forward(self, x, m):
        conv = self.conv2d if self.early else self.input_conv
        mask_conv = self.mask2d if self.early else self.mask_conv
        out = conv(x * m)
        b = conv.bias.view(1, -1, 1, 1).expand_as(out) if conv.bias is not None else torch.zeros_like(out)
        with torch.no_grad():
            msum = mask_conv(m)
        holes = msum == 0
        msum = msum.masked_fill(holes, 1.0)
        out = ((out - b) / msum + b).masked_fill(holes, 0.0)
        return out, (~holes).to(out.dtype)


class NvidiaPartialConv2d(nn.Conv2d):
    """NVIDIA partialconv's PartialConv2d with multi_channel=True and return_mask=True."""

    def __init__(self, cin, cout, k, stride, pad, bias):
        super().__init__(cin, cout, k, stride, pad, bias=bias)
        self.register_buffer('weight_maskUpdater', torch.ones(cout, cin, k, k), persistent=False)
        self.slide_winsize = cin * k * k

    def forward(self, x, m):
        with torch.no_grad():
            update = F.conv2d(m, self.weight_maskUpdater, None, self.stride, self.padding)
            ratio = self.slide_winsize / (update + 1e-8)
            update = torch.clamp(update, 0, 1)
            ratio = ratio * update
        raw = super().forward(x * m)
        if self.bias is not None:
            b = self.bias.view(1, -1, 1, 1)
            out = ((raw - b) * ratio + b) * update
        else:
            out = raw * ratio
        return out, update


class Block(nn.Module):
    """PCBActiv: partial conv, optional BatchNorm, relu / leaky / none."""

    def __init__(self, kind, cin, cout, k, stride, bn, activ, bias):
        super().__init__()
        pad = k // 2
        if kind == 'nvidia':
            self.conv = NvidiaPartialConv2d(cin, cout, k, stride, pad, bias)
        else:
            self.conv = NaotoPartialConv(cin, cout, k, stride, pad, bias, early=kind == 'early')
        if bn:
            self.bn = nn.BatchNorm2d(cout)
        self.activ = activ

    def forward(self, x, m):
        h, hm = self.conv(x, m)
        if hasattr(self, 'bn'):
            h = self.bn(h)
        if self.activ == 'relu':
            h = F.relu(h)
        elif self.activ == 'leaky':
            h = F.leaky_relu(h, 0.2)
        return h, hm


class UNet(nn.Module):
    """naoto0804's PConvUNet(layer_size); kind: 'current', 'early' or 'nvidia'."""

    def __init__(self, layer_size=7, width=64, kind='current', nvidia_bias=True):
        super().__init__()
        assert layer_size >= 4
        self.layer_size = layer_size
        c = lambda n: width * min(2 ** (n - 1), 8)
        # Which convolutions have a bias: naoto0804's current code only dec_1, its early code
        # and NVIDIA's layer (nn.Conv2d's default) all of them.
        bias = (lambda last: last) if kind == 'current' else (lambda last: nvidia_bias or last)
        kernels = {1: 7, 2: 5, 3: 5}
        for n in range(1, layer_size + 1):
            setattr(self, f'enc_{n}', Block(kind, 3 if n == 1 else c(n - 1), c(n), kernels.get(n, 3), 2,
                                            n > 1, 'relu', bias(False)))
        for n in list(range(5, layer_size + 1)) + [4, 3, 2]:
            setattr(self, f'dec_{n}', Block(kind, c(n) + c(n - 1), c(n - 1), 3, 1, True, 'leaky', bias(False)))
        self.dec_1 = Block(kind, c(1) + 3, 3, 3, 1, False, None, bias(True))

    def forward(self, x, m):
        hs, ms = [x], [m]
        for n in range(1, self.layer_size + 1):
            h, hm = getattr(self, f'enc_{n}')(hs[-1], ms[-1])
            hs.append(h)
            ms.append(hm)
        h, hm = hs[-1], ms[-1]
        for n in range(self.layer_size, 0, -1):
            h = F.interpolate(h, scale_factor=2, mode='nearest')
            hm = F.interpolate(hm, scale_factor=2, mode='nearest')
            h = torch.cat([h, hs[n - 1]], dim=1)
            hm = torch.cat([hm, ms[n - 1]], dim=1)
            h, hm = getattr(self, f'dec_{n}')(h, hm)
        return h, hm


# ----------------------------------------------------------------------------- data

def load_photo(path, size, rng):
    img = Image.open(path).convert('RGB')
    s = min(img.size)
    x0 = int(rng.integers(0, img.size[0] - s + 1))
    y0 = int(rng.integers(0, img.size[1] - s + 1))
    img = img.crop((x0, y0, x0 + s, y0 + s)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def make_mask(size, rng):
    """1 = known, 0 = hole: a few rectangles and thick strokes, 10-40 % holes."""
    m = np.ones((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(2, 5))):
        w, h = rng.integers(size // 8, size // 3, 2)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        m[y:y + h, x:x + w] = 0
    x0, y0, x1, y1 = rng.uniform(0, size, 4)
    d = np.abs((y1 - y0) * xx - (x1 - x0) * yy + x1 * y0 - y1 * x0) / max(np.hypot(x1 - x0, y1 - y0), 1)
    m[d < size / 20] = 0
    return m


def to_input(img_u8, mask01):
    x = torch.from_numpy(np.array(img_u8)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    m = torch.from_numpy(mask01).float().view(1, 1, *mask01.shape).expand(1, 3, *mask01.shape).contiguous()
    return ((x - MEAN) / STD) * m, m


def photos():
    out = []
    for sub in ('train', 'val'):
        d = os.path.join(REPO, 'data', sub)
        out += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith('.jpg'))
    return out


def randomise(net, rng_seed, size, batches=6, batch=4):
    """Random BatchNorm affine parameters and biases, then running statistics measured on
    photos with holes (cumulative average over the batches, as a trained model's would be)."""
    g = torch.Generator().manual_seed(rng_seed)
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data = 0.7 + 0.6 * torch.rand(mod.weight.shape, generator=g)
            mod.bias.data = 0.2 * torch.randn(mod.bias.shape, generator=g)
            mod.momentum = None
            mod.reset_running_stats()
        elif isinstance(mod, nn.Conv2d) and mod.bias is not None and mod.bias.requires_grad:
            mod.bias.data = 0.1 * torch.randn(mod.bias.shape, generator=g)
    rng = np.random.default_rng(rng_seed)
    files = photos()
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            xs, ms = [], []
            for _ in range(batch):
                x, m = to_input(load_photo(files[int(rng.integers(len(files)))], size, rng), make_mask(size, rng))
                xs.append(x)
                ms.append(m)
            net(torch.cat(xs), torch.cat(ms))
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = 0.1
    net.eval()
    # A trained model's output spans the image range; random weights give a faint one (naoto's
    # layer averages its window). Scale dec_1 so the output's spread is about 1 (normalised
    # space), which makes the 8-bit comparison meaningful.
    last = net.dec_1.conv
    last = last if isinstance(last, nn.Conv2d) else (last.conv2d if last.early else last.input_conv)
    with torch.no_grad():
        x, m = to_input(load_photo(files[0], size, rng), make_mask(size, rng))
        out, _ = net(x, m)
        spread = (out - last.bias.view(1, -1, 1, 1)).std().item()
        last.weight.data /= spread


def reference(net, img_u8, mask01):
    """PyTorch's raw output (normalised space) and the 8-bit composite pconv should write."""
    x, m = to_input(img_u8, mask01)
    with torch.no_grad():
        out, _ = net(x, m)
    rgb = torch.clamp(out * STD + MEAN, 0, 1)[0].permute(1, 2, 0).numpy()
    raw_u8 = np.floor(rgb * 255.0 + 0.5).astype(np.uint8)  # as pconv's lround
    comp = np.where(mask01[..., None] > 0, img_u8, raw_u8)
    return out[0].numpy().astype(np.float32), comp


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(arr.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def checkpoint(net, n_iter, with_optimizer):
    ckpt = {'n_iter': n_iter, 'model': net.state_dict()}
    if with_optimizer:
        ckpt['optimizer'] = with_optimizer.state_dict()
    return ckpt


def adam_step(net, size, seed):
    """One Adam step on a pixel loss, so the checkpoint carries real optimiser state."""
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-4)
    rng = np.random.default_rng(seed)
    x, m = to_input(load_photo(photos()[0], size, rng), make_mask(size, rng))
    net.train()
    out, _ = net(x, m)
    out.abs().mean().backward()
    opt.step()
    return opt


class Evil:
    """Unpickling this runs a shell command: the importer must refuse it, not run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch ' + self.marker,))


def keras_stand_in(path, width=1):
    """A file laid out as Keras's save_weights writes PConv-Keras (MathiasGruber/PConv-Keras,
    512x512, 8 levels): its layer names and weight names, HWIO kernels, biases everywhere, the
    1x1 'outputs_img' head; channels scaled down (width 1 for 64) to keep it small. inpaint-import
    must recognise it and refuse it. Needs python3-h5py."""
    import h5py
    c = lambda n: width * min(2 ** (n - 1), 8)
    layers = []  # (name, {weight: shape})
    for n, k in zip(range(1, 9), (7, 5, 5, 3, 3, 3, 3, 3)):
        layers.append((f'p_conv2d_{n}', {'kernel:0': (k, k, 3 if n == 1 else c(n - 1), c(n)), 'bias:0': (c(n),)}))
        if n > 1:
            layers.append((f'EncBN{n - 1}', {w: (c(n),) for w in ('gamma:0', 'beta:0', 'moving_mean:0', 'moving_variance:0')}))
    for i, n in enumerate(range(8, 0, -1)):
        cin, cout = c(n) + (c(n - 1) if n > 1 else 3), c(n - 1) if n > 1 else 3
        layers.append((f'p_conv2d_{9 + i}', {'kernel:0': (3, 3, cin, cout), 'bias:0': (cout,)}))
        if n > 1:
            layers.append((f'batch_normalization_{i + 1}', {w: (cout,) for w in ('gamma:0', 'beta:0', 'moving_mean:0', 'moving_variance:0')}))
    layers.append(('outputs_img', {'kernel:0': (1, 1, 3, 3), 'bias:0': (3,)}))
    rng = np.random.default_rng(0)
    with h5py.File(path, 'w', libver='latest') as f:  # compact groups: a small file
        f.attrs['backend'] = b'tensorflow'
        f.attrs['keras_version'] = b'2.2.4'
        f.attrs['layer_names'] = [name.encode() for name, _ in layers]
        for name, weights in layers:
            g = f.create_group(name)
            g.attrs['weight_names'] = [f'{name}/{w}'.encode() for w in weights]
            for w, shape in weights.items():
                g.create_dataset(f'{name}/{w}', data=rng.standard_normal(shape).astype(np.float32), track_times=False)


# ----------------------------------------------------------------------------- commands

def generate(out):
    os.makedirs(out, exist_ok=True)
    size = 64
    rng = np.random.default_rng(7)
    img = load_photo(os.path.join(REPO, 'data', 'val', 'brushes.jpg'), size, rng)
    mask = make_mask(size, rng)
    Image.fromarray(img).save(os.path.join(out, 'image.png'))
    Image.fromarray(((1 - mask) * 255).astype(np.uint8)).save(os.path.join(out, 'mask.png'))  # white = hole

    torch.manual_seed(1)
    # naoto0804, current layout, 5 levels (the 8x width cap is reached), in both formats; the
    # legacy file also carries Adam's state, as the released checkpoint does.
    net = UNet(5, 2, 'current')
    opt = adam_step(net, size, 11)
    randomise(net, 2, size)
    torch.save(checkpoint(net, 1000000, None), os.path.join(out, 'naoto_zip.pth'))
    torch.save(checkpoint(net, 1000000, opt), os.path.join(out, 'naoto_legacy.pth'),
               _use_new_zipfile_serialization=False)
    raw, comp = reference(net, img, mask)
    write_safetensors(os.path.join(out, 'naoto_expected.safetensors'), {'output': raw})
    Image.fromarray(comp).save(os.path.join(out, 'naoto_expected.png'))

    # naoto0804's early code: conv.conv2d / conv.mask2d, a bias on every convolution.
    torch.manual_seed(3)
    net = UNet(4, 2, 'early')
    randomise(net, 4, size)
    torch.save(checkpoint(net, 200000, None), os.path.join(out, 'early_legacy.pth'),
               _use_new_zipfile_serialization=False)
    raw, comp = reference(net, img, mask)
    write_safetensors(os.path.join(out, 'early_expected.safetensors'), {'output': raw})
    Image.fromarray(comp).save(os.path.join(out, 'early_expected.png'))

    # NVIDIA's PartialConv2d (multi_channel), biases everywhere, a bare state dict.
    torch.manual_seed(5)
    net = UNet(4, 2, 'nvidia')
    randomise(net, 6, size)
    torch.save(net.state_dict(), os.path.join(out, 'nvidia_zip.pth'))
    # Forks that register weight_maskUpdater as a buffer save it, and its shape tells multi_channel.
    with_updater = dict(net.state_dict())
    for name, mod in net.named_modules():
        if isinstance(mod, NvidiaPartialConv2d):
            with_updater[name + '.weight_maskUpdater'] = mod.weight_maskUpdater
    torch.save(with_updater, os.path.join(out, 'nvidia_updater_legacy.pth'), _use_new_zipfile_serialization=False)
    torch.save({'enc_1.conv.weight': torch.zeros(2, 3, 7, 7), 'enc_1.conv.weight_maskUpdater': torch.ones(1, 1, 7, 7)},
               os.path.join(out, 'nvidia_single.pth'))
    raw, comp = reference(net, img, mask)
    write_safetensors(os.path.join(out, 'nvidia_expected.safetensors'), {'output': raw})
    Image.fromarray(comp).save(os.path.join(out, 'nvidia_expected.png'))

    # Bad inputs: a layer of the wrong width; tensors of no known layout; code in the pickle.
    sd = UNet(4, 2, 'current').state_dict()
    sd['dec_3.conv.input_conv.weight'] = torch.zeros(5, 24, 3, 3)
    torch.save({'model': sd}, os.path.join(out, 'bad_shape.pth'))
    torch.save({'generator': {'conv1.weight': torch.zeros(4, 3, 3, 3), 'conv1.bias': torch.zeros(4)}},
               os.path.join(out, 'unknown_layout.pth'))
    keras_stand_in(os.path.join(out, 'pconv_keras.h5'))
    marker = '/tmp/pconv-import-pickle-ran-code'
    torch.save({'model': Evil(marker)}, os.path.join(out, 'evil_zip.pth'))
    torch.save({'model': Evil(marker)}, os.path.join(out, 'evil_legacy.pth'), _use_new_zipfile_serialization=False)


def check(build, levels, width, size):
    """Full-size check: returns the largest difference in 8-bit levels."""
    tmp = tempfile.mkdtemp(prefix='pconv-import-check-')
    rng = np.random.default_rng(17)
    img = load_photo(os.path.join(REPO, 'data', 'val', 'dandelions.jpg'), size, rng)
    mask = make_mask(size, rng)
    Image.fromarray(img).save(os.path.join(tmp, 'image.png'))
    Image.fromarray(((1 - mask) * 255).astype(np.uint8)).save(os.path.join(tmp, 'mask.png'))
    torch.manual_seed(0)
    net = UNet(levels, width, 'current')
    randomise(net, 1, size, batches=4, batch=4)
    raw, comp = reference(net, img, mask)
    print(f'model: {levels} levels, width {width}, {sum(p.numel() for p in net.parameters())} parameters; '
          f'output range {raw.min():.2f}..{raw.max():.2f} (normalised)')
    worst = 0
    for fmt, zip_format in (('zip', True), ('legacy', False)):
        pth = os.path.join(tmp, f'model_{fmt}.pth')
        torch.save(checkpoint(net, 1000000, None), pth, _use_new_zipfile_serialization=zip_format)
        st = os.path.join(tmp, f'model_{fmt}.safetensors')
        png = os.path.join(tmp, f'out_{fmt}.png')
        subprocess.run([os.path.join(build, 'inpaint-import'), '--from', pth, '--out', st], check=True)
        subprocess.run([os.path.join(build, 'inpaint-run'), '--model', st, '--image', os.path.join(tmp, 'image.png'),
                        '--mask', os.path.join(tmp, 'mask.png'), '--out', png], check=True)
        got = np.asarray(Image.open(png).convert('RGB')).astype(int)
        diff = np.abs(got - comp.astype(int))
        holes = mask == 0
        print(f'{fmt}: {os.path.getsize(pth) / 1e6:.1f} MB; composite vs PyTorch: max {diff.max()} levels, '
              f'{(diff > 0).mean() * 100:.3f} % of values differ, mean |diff| in holes {diff[holes].mean():.4f}')
        worst = max(worst, int(diff.max()))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    g = sub.add_parser('generate')
    g.add_argument('out')
    c = sub.add_parser('check')
    c.add_argument('build')
    c.add_argument('--levels', type=int, default=7)
    c.add_argument('--width', type=int, default=64)
    c.add_argument('--size', type=int, default=256)
    a = ap.parse_args()
    if a.cmd == 'generate':
        generate(a.out)
    else:
        worst = check(a.build, a.levels, a.width, a.size)
        print('PASS' if worst <= 1 else 'FAIL', f'(largest difference {worst} levels; allowed 1)')
        sys.exit(0 if worst <= 1 else 1)


if __name__ == '__main__':
    main()
