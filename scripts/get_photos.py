#!/usr/bin/python3
"""Fetch and unpack pconv's training photos (data/photos/sources.tsv) and write the manifest.

Packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a cache
folder (nothing is installed system-wide). Packed images are extracted: WebP inside Qt .rcc
bundles (decoded with Pillow), JPEGs inside Enlightenment .edj files (Eet entries, with `eet -x`),
members of zip/pk3/ODF files, Blender's linear EXR panoramas (tone-mapped to sRGB with OpenCV).
Files stb_image reads as they are (JPEG, PNG in RGB/RGBA/grey) are copied byte for byte; the
rest (WebP, PPM, palette PNG, kphotoalbum's rotated demo photos) are written as PNG. Idempotent: a photo that
is already in the output folder is not touched again.
Usage: scripts/get-photos [--out photos] [--cache ~/.cache/pconv-photos]
"""
import argparse, hashlib, io, os, re, shutil, struct, subprocess, sys, tempfile, zipfile, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.join(ROOT, 'data', 'photos', 'sources.tsv')
MANIFEST = os.path.join(ROOT, 'data', 'photos', 'manifest.tsv')

# kphotoalbum's demo/index.xml stores these rotations (degrees clockwise); the JPEGs are unrotated.
KPHOTO_ROTATE = {'new_wave_1.jpg': 90, 'wayne.jpg': 90, 'pool_2.jpg': 270, 'grand_canyon_1.jpg': 180}


def die(msg):
    print(f'get-photos: {msg}', file=sys.stderr)
    sys.exit(2)


def need_modules():
    try:
        import PIL.Image  # noqa: F401
        import numpy  # noqa: F401
        import cv2  # noqa: F401
    except ImportError as e:
        die(f'{e.name} is missing: apt-get install python3-pil python3-numpy python3-opencv (scripts/get-photos does it)')
    for tool in ('eet', 'dpkg-deb', 'apt-get'):
        if not shutil.which(tool):
            die(f'`{tool}` not found (eet: apt-get install libeet-bin)')


def read_sources():
    rows = []
    with open(SOURCES) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            pkg, src, size, split, lic = line.rstrip('\n').split('\t')
            rows.append(dict(pkg=pkg, src=src, size=size, split=split, lic=lic))
    return rows


def unpack_package(pkg, cache):
    """The package's files under cache/root/<pkg>/ (downloaded and unpacked once)."""
    root = os.path.join(cache, 'root', pkg)
    done = os.path.join(root, '.unpacked')
    if os.path.exists(done):
        return root
    debs = os.path.join(cache, 'debs')
    os.makedirs(debs, exist_ok=True)
    have = [f for f in os.listdir(debs) if f.startswith(pkg + '_') and f.endswith('.deb')]
    if not have:
        print(f'get-photos: downloading {pkg}', file=sys.stderr)
        r = subprocess.run(['apt-get', 'download', pkg], cwd=debs, capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(['apt-get', 'update'], capture_output=True, text=True)
            r = subprocess.run(['apt-get', 'download', pkg], cwd=debs, capture_output=True, text=True)
        have = [f for f in os.listdir(debs) if f.startswith(pkg + '_') and f.endswith('.deb')]
        if r.returncode != 0 or not have:
            die(f'package {pkg} could not be downloaded: {(r.stderr or r.stdout).strip().splitlines()[-1:]}')
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    r = subprocess.run(['dpkg-deb', '-x', os.path.join(debs, sorted(have)[-1]), root], capture_output=True, text=True)
    if r.returncode != 0:
        die(f'package {pkg}: dpkg-deb -x failed: {r.stderr.strip()}')
    open(done, 'w').close()
    return root


def locate(path, root):
    """An installed path, or the same path inside the unpacked package."""
    p = os.path.join(root, path.lstrip('/'))
    if os.path.exists(p):
        return p
    if os.path.exists(path):
        return path
    die(f'{path} is not in its package (unpacked at {root}): has the package changed?')


def rcc_members(path):
    """Qt .rcc bundle -> {path inside bundle: bytes} (format: see data-sources.md)."""
    b = open(path, 'rb').read()
    if b[:4] != b'qres':
        die(f'{path} is not a Qt resource bundle')
    ver, tree, data, names = struct.unpack('>IIII', b[4:20])
    nsz = 14 if ver == 1 else 22
    out = {}

    def name(off):
        o = names + off
        n = struct.unpack('>H', b[o:o + 2])[0]
        return b[o + 6:o + 6 + 2 * n].decode('utf-16-be')

    def walk(idx, prefix):
        o = tree + idx * nsz
        noff, flags = struct.unpack('>IH', b[o:o + 6])
        nm = name(noff) if idx else ''
        if flags & 2:
            cnt, first = struct.unpack('>II', b[o + 6:o + 14])
            for c in range(cnt):
                walk(first + c, prefix + nm + '/' if idx else '')
        else:
            doff = struct.unpack('>I', b[o + 10:o + 14])[0]
            p = data + doff
            sz = struct.unpack('>I', b[p:p + 4])[0]
            raw = b[p + 4:p + 4 + sz]
            if flags & 1:
                raw = zlib.decompress(raw[4:])
            elif flags & 4:
                raw = None  # zstd: not used by the listed bundles
            out[prefix + nm] = raw
    walk(0, '')
    return out


_rcc_cache = {}


def rcc_member(bundle, member):
    if bundle not in _rcc_cache:
        _rcc_cache.clear()
        _rcc_cache[bundle] = rcc_members(bundle)
    hits = [k for k in _rcc_cache[bundle] if k.endswith('/resource/' + member) or k == member]
    if len(hits) != 1 or _rcc_cache[bundle][hits[0]] is None:
        die(f'{bundle}::{member}: {len(hits)} matching entries in the bundle')
    return _rcc_cache[bundle][hits[0]]


def edj_main_image(path):
    """The largest image of an Enlightenment .edj background (stored as a plain JPEG Eet entry)."""
    from PIL import Image
    keys = subprocess.run(['eet', '-l', path], capture_output=True, text=True, check=True).stdout.split()
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for k in keys:
            if not k.startswith('edje/images/'):
                continue
            out = os.path.join(tmp, 'x')
            subprocess.run(['eet', '-x', path, k, out], capture_output=True, check=True)
            raw = open(out, 'rb').read()
            if raw[:2] != b'\xff\xd8':
                continue
            w, h = Image.open(io.BytesIO(raw)).size
            if best is None or w * h > best[0]:
                best = (w * h, raw)
    if best is None:
        die(f'{path}: no JPEG image entry found')
    return best[1]


def exr_to_srgb(path):
    """Linear HDR panorama -> 8-bit sRGB: exposure so the 99th percentile maps to white, Reinhard-free clip."""
    os.environ['OPENCV_IO_ENABLE_OPENEXR'] = '1'
    import cv2, numpy as np
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        die(f'{path}: OpenCV could not read the EXR')
    img = np.nan_to_num(img[..., :3].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
    lum = img @ [0.0722, 0.7152, 0.2126]  # BGR
    img = img / max(np.percentile(lum, 99.0), 1e-6)
    img = np.where(img <= 0.0031308, 12.92 * img, 1.055 * np.power(img.clip(0, None), 1 / 2.4) - 0.055)
    img = (img.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    ok, png = cv2.imencode('.png', img)
    return png.tobytes()


def load_bytes(row, root):
    src = row['src']
    if '::' in src:
        bundle, member = src.split('::', 1)
        return member, rcc_member(locate(bundle, root), member)
    if '!' in src:
        container, member = src.split('!', 1)
        c = locate(container, root)
        if c.endswith('.edj'):
            return os.path.basename(c)[:-4] + '.jpg', edj_main_image(c)
        with zipfile.ZipFile(c) as z:
            return member, z.read(member)
    p = locate(src, root)
    if p.endswith('.exr'):
        return os.path.basename(p)[:-4] + '.png', exr_to_srgb(p)
    return os.path.basename(p), open(p, 'rb').read()


def normalise(name, raw, row):
    """(extension, bytes) stb_image reads with the right orientation: copied when it already does."""
    from PIL import Image
    im = Image.open(io.BytesIO(raw))
    rot = KPHOTO_ROTATE.get(name, 0) if row['pkg'] == 'kphotoalbum' else 0
    # EXIF orientation is ignored on purpose, as stb_image does: the one listed file that has a tag
    # (gdk-pixbuf's bug143608-comment.jpg, orientation 6) is a test file whose pixels are already upright.
    if im.format in ('JPEG', 'PNG') and im.mode in ('RGB', 'RGBA', 'L') and not rot:
        return ('.jpg' if im.format == 'JPEG' else '.png'), raw, im.size
    if rot:
        im = im.rotate(-rot, expand=True)
    im = im.convert('RGB')
    buf = io.BytesIO()
    im.save(buf, 'PNG')
    return '.png', buf.getvalue(), im.size


def flat_name(row, member):
    member = member.lstrip('.')  # afterstep's backgrounds are hidden files without an extension
    stem = re.sub(r'\.(jpe?g|png|webp|exr|ppm)$', '', member, flags=re.I)
    if row['src'].startswith('/usr/share/wallpapers/'):
        stem = row['src'].split('/')[4]  # plasma: every file is NAME/contents/images/2560x1600.jpg
    if '::' in row['src']:
        stem = os.path.basename(row['src'].split('::')[0])[:-4] + '-' + stem
    stem = re.sub(r'[^A-Za-z0-9_.-]+', '_', stem.lstrip('.'))
    return stem


def member_of(row):
    member = row['src'].split('::')[-1].split('!')[-1]
    if row['src'].endswith('.edj!img.png'):
        member = os.path.basename(row['src'].split('!')[0])[:-4]
    return member


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=os.path.join(ROOT, 'photos'))
    ap.add_argument('--cache', default=os.path.join(os.path.expanduser('~'), '.cache', 'pconv-photos'))
    args = ap.parse_args()
    need_modules()
    rows = read_sources()
    # Stems that occur twice in a package (opencv-doc's data/home.jpg and reg/home.png) get their folder prefixed.
    stems = {}
    for row in rows:
        key = (row['pkg'], flat_name(row, os.path.basename(member_of(row))))
        stems[key] = stems.get(key, 0) + 1
    manifest = []
    seen = set()
    for i, row in enumerate(rows):
        root = unpack_package(row['pkg'], args.cache)
        folder = os.path.join(args.out, row['split'], row['pkg'])
        os.makedirs(folder, exist_ok=True)
        # The member name decides the file name; extraction is skipped when it is already there.
        member = member_of(row)
        stem = flat_name(row, os.path.basename(member))
        if stems[(row['pkg'], stem)] > 1:
            stem = os.path.basename(os.path.dirname(row['src'].split('!')[0].split('::')[0])) + '_' + stem
        existing = [f for f in (stem + '.jpg', stem + '.png') if os.path.exists(os.path.join(folder, f))]
        if existing:
            dest = os.path.join(folder, existing[0])
            from PIL import Image
            size = Image.open(dest).size
        else:
            name, raw = load_bytes(row, root)
            ext, data, size = normalise(os.path.basename(name), raw, row)
            dest = os.path.join(folder, stem + ext)
            tmp = dest + '.tmp'
            with open(tmp, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        rel = os.path.relpath(dest, args.out)
        if rel in seen:
            die(f'two sources map to {rel}')
        seen.add(rel)
        manifest.append((rel, f'{size[0]}x{size[1]}', row['pkg'], row['split'], row['lic'], row['src']))
        if (i + 1) % 50 == 0 or i + 1 == len(rows):
            print(f'get-photos: {i + 1}/{len(rows)} photos ({row["pkg"]})', file=sys.stderr)
    tmp = MANIFEST + '.tmp'
    with open(tmp, 'w') as f:
        f.write('# path (under photos/)\tsize\tpackage\tsplit\tlicence\tsource\n')
        for m in manifest:
            f.write('\t'.join(m) + '\n')
    os.replace(tmp, MANIFEST)
    n = {s: sum(1 for m in manifest if m[3] == s) for s in ('train', 'val')}
    print(f'get-photos: {n["train"]} training and {n["val"]} validation photos in {args.out}/{{train,val}}; '
          f'manifest: {os.path.relpath(MANIFEST, ROOT)}')


if __name__ == '__main__':
    main()
