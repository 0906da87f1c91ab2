#!/usr/bin/python3
"""The bundled model's quality bar: pconv vs OpenCV Telea and Navier-Stokes.

On the held-out photos (photos/val, written by scripts/get-photos), at 256x256 and 512x512 centre
crops, with irregular masks from inpaint-masks in the paper's hole-ratio buckets (0.1-0.2, 0.2-0.3,
0.3-0.4; --per-bucket masks per photo and bucket), it runs the model through inpaint-eval and
cv2.inpaint (radius 5) on the same images and masks, and pconv's harmonic fill alone (inpaint-run
--fill-only: what a residual model adds texture to), scores all four with inpaint-eval's metrics
and prints the table, with each method's hole detail (inpaint-eval's median per bucket: the fill's
mean Sobel gradient of the luminance inside the hole eroded by 2 px over the truth's; 1 = the truth's
detail, below 1 blur, above 1 noise). Exit status 0 when the model reaches the bar (PSNR >= Telea +
1.0 dB in every bucket at both sizes, SSIM and l1 better than Telea), 1 when not, 2 on errors.
With --detail-bar the exit status is that of the detail bar instead: in every bucket at every size,
pconv's hole detail in [0.6, 1.3], PSNR >= Telea's and SSIM >= Telea's - 0.01. The table shows
both bars.
Usage: scripts/quality-bar [--model FILE] [--build build] [--sizes 256,512] [--md table.md] [--figure fig.png]
                           [--detail-bar]
"""
import argparse, csv, os, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKETS = [(0.1, 0.2), (0.2, 0.3), (0.3, 0.4)]
LABELS = ['(0.1,0.2]', '(0.2,0.3]', '(0.3,0.4]']
METHODS = ('pconv', 'telea', 'ns', 'fill')
DETAIL_RANGE = (0.6, 1.3)  # neither a blur (< 0.6) nor noise (> 1.3)


def die(msg):
    print(f'quality-bar: {msg}', file=sys.stderr)
    sys.exit(2)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        die(f'{" ".join(cmd[:2])} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}')
    return r


def centre_crop(im, size):
    from PIL import Image
    w, h = im.size
    if min(w, h) < size:  # enlarge small photos so the crop exists
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = im.size
    x, y = (w - size) // 2, (h - size) // 2
    return im.crop((x, y, x + size, y + size))


def read_csv(path):
    with open(path) as f:
        rows = csv.DictReader(f)
        if 'hole_detail' not in (rows.fieldnames or []):
            die(f'{path} has no hole_detail column: inpaint-eval is older than this script, rebuild it')
        return {r['bucket']: r for r in rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='', help='model file (default: the bundled model)')
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--texture', default='none', choices=['none', 'transfer'],
                    help='the model with inpaint-run --texture transfer (detail from the known pixels)')
    ap.add_argument('--photos', default=os.path.join(ROOT, 'photos', 'val'))
    ap.add_argument('--sizes', default='256,512')
    ap.add_argument('--per-bucket', type=int, default=2, help='masks per photo and bucket')
    ap.add_argument('--seed', type=int, default=2018)
    ap.add_argument('--md', default='', help='also write the table as markdown here')
    ap.add_argument('--figure', default='', help='write a before/after figure (PNG) of a few photos here')
    ap.add_argument('--keep', default='', help='keep the images, masks and results in this folder')
    ap.add_argument('--detail-bar', action='store_true',
                    help="exit status from issue 20's bar (hole detail 0.6-1.3, PSNR >= Telea, "
                         'SSIM >= Telea - 0.01) instead of PSNR >= Telea + 1 dB')
    args = ap.parse_args()
    try:
        import cv2, numpy as np
        from PIL import Image
    except ImportError as e:
        die(f'{e.name} is missing: apt-get install python3-opencv python3-pil python3-numpy')
    for tool in ('inpaint-masks', 'inpaint-eval', 'inpaint-run'):
        if not os.access(os.path.join(args.build, tool), os.X_OK):
            die(f'{args.build}/{tool} not found: build first (scripts/setup)')
    photos = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(args.photos) for f in fs
                    if f.lower().endswith(('.jpg', '.jpeg', '.png')))
    if len(photos) < 1:
        die(f'no photos in {args.photos}: run scripts/get-photos')
    work = args.keep or tempfile.mkdtemp(prefix='pconv-quality-')
    os.makedirs(work, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(',')]
    results = {}
    for size in sizes:
        d = os.path.join(work, str(size))
        shutil.rmtree(d, ignore_errors=True)
        for sub in ('images', 'masks', 'telea', 'ns', 'pool'):
            os.makedirs(os.path.join(d, sub))
        # A pool of generated masks, sorted into the buckets by their measured hole ratio.
        need = len(photos) * args.per_bucket
        pools = [[] for _ in BUCKETS]
        seed = args.seed + size
        while min(len(p) for p in pools) < need:
            pool = os.path.join(d, 'pool', str(seed))
            run([os.path.join(args.build, 'inpaint-masks'), '--count', str(4 * need), '--size', str(size),
                 '--seed', str(seed), '--min-ratio', '0.1', '--max-ratio', '0.4', '--out', pool])
            for f in sorted(os.listdir(pool)):
                m = np.array(Image.open(os.path.join(pool, f)).convert('L')) > 127
                r = m.mean()
                for b, (lo, hi) in enumerate(BUCKETS):
                    if lo < r <= hi and len(pools[b]) < need:
                        pools[b].append(m)
            seed += 1000
        for i, p in enumerate(photos):
            crop = centre_crop(Image.open(p).convert('RGB'), size)
            stem = os.path.splitext(os.path.basename(p))[0]
            for b in range(len(BUCKETS)):
                for k in range(args.per_bucket):
                    name = f'{stem}-b{b + 1}-{k}'
                    hole = pools[b][i * args.per_bucket + k]
                    crop.save(os.path.join(d, 'images', name + '.png'))
                    Image.fromarray((hole * 255).astype(np.uint8)).save(os.path.join(d, 'masks', name + '.png'))
                    bgr = cv2.cvtColor(np.array(crop), cv2.COLOR_RGB2BGR)
                    m8 = (hole * 255).astype(np.uint8)
                    for method, flag in (('telea', cv2.INPAINT_TELEA), ('ns', cv2.INPAINT_NS)):
                        out = cv2.inpaint(bgr, m8, 5, flag)
                        cv2.imwrite(os.path.join(d, method, name + '.png'), out)
        model_args = (['--model', args.model] if args.model else []) + ['--texture', args.texture]
        ev = os.path.join(args.build, 'inpaint-eval')
        run([ev, '--images', os.path.join(d, 'images'), '--masks', os.path.join(d, 'masks'),
             '--csv', os.path.join(d, 'pconv.csv'), '--force'] + model_args)
        # The harmonic fill alone (no network): what a residual model starts from, so the table
        # shows what the network adds to it.
        run([os.path.join(args.build, 'inpaint-run'), '--fill-only', '--image', os.path.join(d, 'images'),
             '--mask', os.path.join(d, 'masks'), '--out', os.path.join(d, 'fill'), '--force'])
        for method in ('telea', 'ns', 'fill'):
            run([ev, '--results', os.path.join(d, method), '--gt', os.path.join(d, 'images'),
                 '--masks', os.path.join(d, 'masks'), '--csv', os.path.join(d, method + '.csv'), '--force'])
        results[size] = {m: read_csv(os.path.join(d, m + '.csv')) for m in METHODS}

    lines, ok_psnr, ok_detail = quality_table(results, sizes)
    table = '\n'.join(lines)
    print(table)
    print(f'quality-bar: {len(photos)} photos x {len(BUCKETS)} buckets x {args.per_bucket} masks per size; '
          f'bar (PSNR >= Telea + 1 dB, SSIM and l1 better, every bucket and size): {"MET" if ok_psnr else "NOT MET"}; '
          f'detail bar (hole detail {DETAIL_RANGE[0]}-{DETAIL_RANGE[1]}, PSNR >= Telea, SSIM >= Telea - 0.01): '
          f'{"MET" if ok_detail else "NOT MET"}; exit status from the {"detail bar" if args.detail_bar else "bar"}')
    ok = ok_detail if args.detail_bar else ok_psnr
    if args.md:
        with open(args.md, 'w') as f:
            f.write(table + '\n')
    if args.figure:
        make_figure(args, work, sizes[-1], photos)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


def quality_table(results, sizes):
    """The markdown table's lines from inpaint-eval's bucket CSVs, results[size][method][label],
    and whether each bar is met in every row: (lines, bar met, detail bar met)."""
    ok_psnr = ok_detail = True
    head = ('| size | hole ratio | n | pconv PSNR | Telea PSNR | NS PSNR | fill PSNR | pconv − Telea | pconv − fill '
            '| pconv SSIM | Telea SSIM | NS SSIM | fill SSIM | pconv ℓ1 % | Telea ℓ1 % | NS ℓ1 % | fill ℓ1 % '
            '| pconv detail | Telea detail | NS detail | fill detail | bar | detail bar |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    f = lambda row, k: float(row[k])  # 'nan' (a hole detail no image had) reads as NaN
    for size in sizes:
        r = results[size]
        for label in LABELS:
            p, t, n, h = (r[m][label] for m in METHODS)
            margin = f(p, 'psnr') - f(t, 'psnr')
            met = margin >= 1.0 and f(p, 'ssim') > f(t, 'ssim') and f(p, 'l1_percent') < f(t, 'l1_percent')
            # NaN compares false, so a row without a hole detail does not meet the detail bar.
            detail_met = (DETAIL_RANGE[0] <= f(p, 'hole_detail') <= DETAIL_RANGE[1] and margin >= 0
                          and f(p, 'ssim') >= f(t, 'ssim') - 0.01)
            ok_psnr, ok_detail = ok_psnr and met, ok_detail and detail_met
            lines.append(f'| {size} | {label} | {p["count"]} | {f(p, "psnr"):.2f} | {f(t, "psnr"):.2f} | '
                         f'{f(n, "psnr"):.2f} | {f(h, "psnr"):.2f} | {margin:+.2f} | {f(p, "psnr") - f(h, "psnr"):+.2f} | '
                         f'{f(p, "ssim"):.4f} | {f(t, "ssim"):.4f} | {f(n, "ssim"):.4f} | {f(h, "ssim"):.4f} | '
                         f'{f(p, "l1_percent"):.2f} | {f(t, "l1_percent"):.2f} | {f(n, "l1_percent"):.2f} | '
                         f'{f(h, "l1_percent"):.2f} | '
                         + ' | '.join(f'{f(x, "hole_detail"):.2f}' for x in (p, t, n, h)) +
                         f' | {"met" if met else "not met"} | {"met" if detail_met else "not met"} |')
    return lines, ok_psnr, ok_detail


def make_figure(args, work, size, photos):
    """Rows of: input with holes | Telea | pconv | ground truth, for a few photos (bucket 2)."""
    from PIL import Image
    import numpy as np
    d = os.path.join(work, str(size))
    picks = [os.path.splitext(os.path.basename(p))[0] for p in photos][::max(1, len(photos) // 4)][:4]
    out_dir = os.path.join(d, 'pconv')
    os.makedirs(out_dir, exist_ok=True)
    model_args = (['--model', args.model] if args.model else []) + ['--texture', args.texture]
    rows = []
    for stem in picks:
        name = f'{stem}-b2-0'
        img, mask = os.path.join(d, 'images', name + '.png'), os.path.join(d, 'masks', name + '.png')
        out = os.path.join(out_dir, name + '.png')
        run([os.path.join(args.build, 'inpaint-run'), '--image', img, '--mask', mask, '--out', out, '--force'] + model_args)
        gt = np.array(Image.open(img).convert('RGB'))
        hole = np.array(Image.open(mask).convert('L')) > 127
        shown = gt.copy()
        shown[hole] = 255
        tiles = [shown, np.array(Image.open(os.path.join(d, 'telea', name + '.png')).convert('RGB')),
                 np.array(Image.open(out).convert('RGB')), gt]
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.figure, quality=88)
    print(f'quality-bar: figure (input | OpenCV Telea | pconv | truth) written to {args.figure}')


if __name__ == '__main__':
    main()
