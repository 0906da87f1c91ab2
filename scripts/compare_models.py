#!/usr/bin/python3
"""Side-by-side figure of models on held-out photos (a new model replaces the bundled one
only with no visible artefacts, shown at full resolution beside Telea, the fill alone and the previous
model on at least six held-out photos with 20-40 % holes, a flat sky and a fine texture among them).

For each photo (centre crop of --size px, as scripts/quality-bar crops them) it takes the first mask of
a seeded inpaint-masks sequence whose hole ratio lies in --holes (the seed depends on --seed and the
photo's name only, so a photo gets the same mask whichever others are chosen), fills it with OpenCV
Telea (cv2.inpaint, radius 5), pconv's harmonic fill alone (inpaint-run --fill-only) and each --model
(inpaint-run --model), scores every column with inpaint-eval (PSNR, SSIM, hole detail) and writes
  OUT                 one JPEG (quality 92, 4:4:4), one row per photo, panels at full resolution:
                      input with holes | Telea | fill alone | each model in order | truth
  OUT_STEM-panels/    every panel as PNG (<photo>/<column>.png, with the mask)
  OUT_STEM.md         the per-photo PSNR / SSIM / hole detail of each column, and the figure's link
Usage: scripts/compare-models --model previous=data/model/pconv-photos.safetensors \\
                              --model new=runs/x/checkpoints/step-N.safetensors [--photos photos/val]
                              (NAME=PATH@transfer: that model with inpaint-run --texture transfer)
                              [--photo NAME ...] [--count 6] [--size 512] [--holes 0.2-0.4] [--seed 2020]
                              [--build build] [--out runs/compare/compare.jpg] [--show-holes checker|white]
                              [--device cpu|cuda]
"""
import argparse, csv, os, re, shutil, statistics, subprocess, sys, tempfile, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(ROOT, 'data', 'model', 'pconv-photos.safetensors')
# Default picks, in order (the first --count that exist are used): a flat sky, a fine texture
# (fur and whiskers), grass and tree trunks, sea under a sky, straight edges, rock.
DEFAULT_PHOTOS = ['Bridge_by_Sander_Klootwijk', 'erase-red_panda', 'Path', 'skagen', 'building', 'cliff',
                  'erase-giraffe', 'fog', 'LadyBird', 'Green-Maple']
RESERVED = {'input', 'mask', 'telea', 'fill', 'truth'}
GAP = 4  # white pixels between panels


def die(msg):
    print(f'compare-models: {msg}', file=sys.stderr)
    sys.exit(2)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()
        die(f'{os.path.basename(cmd[0])} failed (exit {r.returncode}): {last[-1] if last else "no message"}')
    return r


def parse_holes(text):
    m = re.fullmatch(r'\s*([0-9.]+)\s*-\s*([0-9.]+)\s*', text)
    if not m:
        die(f'--holes {text!r}: expected LO-HI, e.g. 0.2-0.4')
    lo, hi = float(m.group(1)), float(m.group(2))
    if hi > 1:  # given in per cent
        lo, hi = lo / 100, hi / 100
    if not 0 < lo < hi <= 1:
        die(f'--holes {text!r}: need 0 < LO < HI <= 1 (or per cent)')
    return lo, hi


def parse_models(specs):
    models = []
    for spec in specs:
        name, sep, path = spec.partition('=')
        if not sep or not name or not path:
            die(f'--model {spec!r}: expected NAME=PATH')
        if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.+-]*', name) or name.lower() in RESERVED:
            die(f'--model {spec!r}: NAME must be letters, digits, _.+- and not one of {", ".join(sorted(RESERVED))}')
        if any(n == name for n, _ in models):
            die(f'--model {name} given twice')
        path, _, texture = path.partition('@')
        if texture not in ('', 'transfer'):
            die(f'--model {spec!r}: the only suffix is @transfer (inpaint-run --texture transfer)')
        if not os.path.isfile(path):
            die(f'model file {path} (--model {name}) not found')
        models.append((name, path + ('@' + texture if texture else '')))
    return models


def repo_path(p):
    """p relative to the repository when inside it, else absolute."""
    r = os.path.relpath(os.path.abspath(p), ROOT)
    return os.path.abspath(p) if r.startswith('..') else r


def list_photos(folder):
    if not os.path.isdir(folder):
        die(f'no photo folder {folder}: run scripts/get-photos')
    photos = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs
                    if f.lower().endswith(('.jpg', '.jpeg', '.png', '.webp')))
    if not photos:
        die(f'no photos in {folder}: run scripts/get-photos')
    return photos


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def find_photo(name, photos, folder):
    """A photo by file name, stem, path relative to the folder, or an unambiguous part of its name."""
    if os.path.isfile(name):
        return name
    exact = [p for p in photos if name in (os.path.basename(p), stem(p), os.path.relpath(p, folder))]
    if len(exact) == 1:
        return exact[0]
    part = [p for p in photos if name.lower() in os.path.relpath(p, folder).lower()]
    if len(exact) > 1 or len(part) > 1:
        die(f'--photo {name} matches {len(exact) or len(part)} photos in {folder} '
            f'({", ".join(os.path.relpath(p, folder) for p in (exact or part)[:4])}{"…" if len(exact or part) > 4 else ""}): '
            'give more of the name')
    if not part:
        die(f'--photo {name}: no such photo in {folder}')
    return part[0]


def choose_photos(args, photos):
    if args.photo:
        chosen = [find_photo(n, photos, args.photos) for n in args.photo]
    else:
        by_stem = {stem(p): p for p in photos}
        chosen = [by_stem[s] for s in DEFAULT_PHOTOS if s in by_stem]
        chosen += [p for p in photos if p not in chosen]  # other photo sets: fill up in name order
        chosen = chosen[:args.count]
    names = [stem(p) for p in chosen]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        die(f'two chosen photos share the name {sorted(dup)[0]}')
    return chosen


def centre_crop(im, size):
    """scripts/quality_bar.py's crop: the centre size x size, small photos enlarged first."""
    from PIL import Image
    w, h = im.size
    if min(w, h) < size:
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = im.size
    x, y = (w - size) // 2, (h - size) // 2
    return im.crop((x, y, x + size, y + size))


def pick_mask(args, name, lo, hi, work):
    """The first mask of the photo's seeded inpaint-masks sequence with a hole ratio in [lo, hi]."""
    import numpy as np
    from PIL import Image
    seed = (args.seed * 1000003 + zlib.crc32(name.encode())) % (2 ** 31)
    for attempt, count in enumerate((8, 64)):
        pool = os.path.join(work, 'pool', f'{name}-{attempt}')
        run([os.path.join(args.build, 'inpaint-masks'), '--count', str(count), '--size', str(args.size),
             '--seed', str(seed), '--min-ratio', f'{lo:g}', '--max-ratio', f'{hi:g}', '--out', pool])
        for f in sorted(os.listdir(pool)):
            hole = np.array(Image.open(os.path.join(pool, f)).convert('L')) > 127
            if lo <= hole.mean() <= hi:
                return hole
    die(f'no mask with a hole ratio in {lo:g}-{hi:g} among 64 from inpaint-masks (seed {seed}, size {args.size})')


def load_font(size, bold=False):
    from PIL import ImageFont
    face = 'DejaVuSans-Bold.ttf' if bold else 'DejaVuSans.ttf'
    for f in ('/usr/share/fonts/truetype/dejavu/' + face, face):
        try:
            return ImageFont.truetype(f, size)
        except OSError:
            pass
    return ImageFont.load_default()


def fit(draw, text, font, width):
    """text, cut with an ellipsis to fit width pixels."""
    def w(t):
        try:
            return draw.textlength(t, font=font)
        except (AttributeError, TypeError, ValueError):
            return 6 * len(t)
    if w(text) <= width:
        return text
    while text and w(text + '…') > width:
        text = text[:-1]
    return text + '…'


def read_scores(path):
    with open(path) as f:
        rows = csv.DictReader(f)
        if 'hole_detail' not in (rows.fieldnames or []):
            die(f'{path} has no hole_detail column: inpaint-eval is older than this script, rebuild it')
        return {r['name']: r for r in rows}


def main():
    ap = argparse.ArgumentParser(prog='compare-models', description='Side-by-side figure: input | Telea | fill alone | models | truth.')
    ap.add_argument('--model', action='append', default=[], metavar='NAME=PATH',
                    help='a model to show, repeatable, columns in this order '
                         f'(default: bundled={os.path.relpath(BUNDLED)})')
    ap.add_argument('--photos', default=os.path.join(ROOT, 'photos', 'val'), help='held-out photo folder')
    ap.add_argument('--photo', action='append', default=[], metavar='NAME',
                    help='a photo (file name, stem or unambiguous part of it), repeatable; default: '
                         f'the first --count of {", ".join(DEFAULT_PHOTOS[:6])}, …')
    ap.add_argument('--count', type=int, default=6, help='photos when --photo is not given (default 6)')
    ap.add_argument('--size', type=int, default=512, help='centre crop size in px (default 512)')
    ap.add_argument('--holes', default='0.2-0.4', help='hole ratio range of the masks (default 0.2-0.4)')
    ap.add_argument('--seed', type=int, default=2020, help='mask seed (default 2020)')
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'), help='folder of the pconv binaries')
    ap.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='inpaint-run --device for the models')
    ap.add_argument('--out', default=os.path.join(ROOT, 'runs', 'compare', 'compare.jpg'), help='the figure (JPEG)')
    ap.add_argument('--show-holes', default='checker', choices=('checker', 'white'),
                    help='how the input column shows the holes (default checker: white holes hide in white fur)')
    args = ap.parse_args()
    try:
        import cv2, numpy as np
        from PIL import Image, ImageDraw, ImageOps
    except ImportError as e:
        die(f'{e.name} is missing: apt-get install python3-opencv python3-pil python3-numpy')
    if args.size < 16:
        die(f'--size {args.size}: too small')
    if args.count < 1:
        die(f'--count {args.count}: need at least 1')
    lo, hi = parse_holes(args.holes)
    for tool in ('inpaint-masks', 'inpaint-run', 'inpaint-eval'):
        if not os.access(os.path.join(args.build, tool), os.X_OK):
            die(f'{os.path.join(args.build, tool)} not found: build it (ninja -C {args.build} {tool})')
    models = parse_models(args.model or [f'bundled={BUNDLED}'])
    photos = choose_photos(args, list_photos(args.photos))
    if not args.out.lower().endswith(('.jpg', '.jpeg')):
        die(f'--out {args.out}: the figure is a JPEG (.jpg)')
    if len(photos) < 6:
        print(f'compare-models: note: {len(photos)} photos; issue 20 asks for at least six', file=sys.stderr)

    work = tempfile.mkdtemp(prefix='pconv-compare-')
    try:
        d = lambda *p: os.path.join(work, *p)
        for sub in ('images', 'masks', 'telea'):
            os.makedirs(d(sub))
        names, truth, holes = [], {}, {}
        for p in photos:
            name = stem(p)
            try:
                crop = centre_crop(ImageOps.exif_transpose(Image.open(p)).convert('RGB'), args.size)
            except OSError as e:
                die(f'cannot read photo {p}: {e}')
            hole = pick_mask(args, name, lo, hi, work)
            crop.save(d('images', name + '.png'))
            m8 = (hole * 255).astype(np.uint8)  # holes white, as inpaint-masks writes them
            Image.fromarray(m8).save(d('masks', name + '.png'))
            bgr = cv2.cvtColor(np.array(crop), cv2.COLOR_RGB2BGR)
            cv2.imwrite(d('telea', name + '.png'), cv2.inpaint(bgr, m8, 5, cv2.INPAINT_TELEA))
            names.append(name)
            truth[name], holes[name] = np.array(crop), hole
        # columns after the input: (key, header, folder of results)
        columns = [('telea', 'OpenCV Telea', d('telea')), ('fill', 'fill alone (harmonic)', d('fill'))]
        run_ = os.path.join(args.build, 'inpaint-run')
        run([run_, '--fill-only', '--image', d('images'), '--mask', d('masks'), '--out', d('fill'), '--force'])
        for i, (mname, spec) in enumerate(models):
            out = d(f'model-{i}')
            path, _, texture = spec.partition('@')
            print(f'compare-models: {mname} ({spec}) on {len(names)} photos', file=sys.stderr)
            run([run_, '--model', path, '--image', d('images'), '--mask', d('masks'), '--out', out,
                 '--device', args.device, '--force', '--texture', texture or 'none'])
            columns.append((mname, mname, out))
        ev = os.path.join(args.build, 'inpaint-eval')
        scores = {}
        for key, _, folder in columns:
            csv_path = os.path.join(work, f'{key}-scores.csv')
            run([ev, '--results', folder, '--gt', d('images'), '--masks', d('masks'),
                 '--per-image-csv', csv_path, '--force'])
            scores[key] = read_scores(csv_path)
            missing = [n for n in names if n not in scores[key]]
            if missing:
                die(f'inpaint-eval scored no {missing[0]} for {key}')
        results = {key: {n: np.array(Image.open(os.path.join(folder, n + '.png')).convert('RGB')) for n in names}
                   for key, _, folder in columns}
        ratio = {n: float(scores['telea'][n]['hole_ratio']) for n in names}

        # Panels as PNG, in a folder next to the figure.
        out = os.path.abspath(args.out)
        base = os.path.splitext(out)[0]
        panels = base + '-panels'
        if os.path.isfile(os.path.join(panels, '.compare-models')):
            shutil.rmtree(panels)  # ours from an earlier run: no stale panels
        os.makedirs(panels, exist_ok=True)
        open(os.path.join(panels, '.compare-models'), 'w').close()
        shown = {}
        for n in names:
            img = truth[n].copy()
            if args.show_holes == 'white':
                img[holes[n]] = 255
            else:
                yy, xx = np.mgrid[:args.size, :args.size]
                check = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 204, 153).astype(np.uint8)
                img[holes[n]] = np.broadcast_to(check, img.shape)[holes[n]]
            shown[n] = img
            pd = os.path.join(panels, n)
            os.makedirs(pd, exist_ok=True)
            Image.fromarray(img).save(os.path.join(pd, 'input.png'))
            Image.fromarray((holes[n] * 255).astype(np.uint8)).save(os.path.join(pd, 'mask.png'))
            for key, _, _ in columns:
                Image.fromarray(results[key][n]).save(os.path.join(pd, key + '.png'))
            Image.fromarray(truth[n]).save(os.path.join(pd, 'truth.png'))

        # The figure: a header row, then per photo a label strip and the panels at full size.
        S = args.size
        heads = [f'input ({args.show_holes} = holes)'] + [h for _, h, _ in columns] + ['truth']
        ncol = len(heads)
        fsize = max(11, min(18, S // 20))
        font, bold = load_font(fsize), load_font(fsize, bold=True)
        head_h, strip_h = fsize + 14, 2 * fsize + 12
        W = ncol * S + (ncol + 1) * GAP
        H = head_h + len(names) * (strip_h + S + GAP) + GAP
        fig = Image.new('RGB', (W, H), 'white')
        draw = ImageDraw.Draw(fig)
        x0 = lambda c: GAP + c * (S + GAP)
        for c, h in enumerate(heads):
            draw.text((x0(c) + 4, 7), fit(draw, h, bold, S - 8), fill='black', font=bold)
        y = head_h
        for n in names:
            psnr, det = (lambda k: float(scores[k][n]['psnr'])), (lambda k: float(scores[k][n]['hole_detail']))
            line2 = lambda k: next((t for t in (f'PSNR {psnr(k):.2f} dB   detail {det(k):.2f}',
                                                f'{psnr(k):.2f} dB / {det(k):.2f}')
                                    if fit(draw, t, font, S - 8) == t), f'{psnr(k):.1f}/{det(k):.2f}')
            labels = [(n, f'holes {100 * ratio[n]:.1f} %')] + \
                     [(h, line2(k)) for k, h, _ in columns] + [('truth', 'detail 1.00')]
            for c, (l1, l2) in enumerate(labels):
                draw.text((x0(c) + 4, y + 3), fit(draw, l1, font, S - 8), fill='black' if c == 0 else '#444444',
                          font=font)
                draw.text((x0(c) + 4, y + 6 + fsize), fit(draw, l2, font, S - 8), fill='#444444', font=font)
            y += strip_h
            for c, tile in enumerate([shown[n]] + [results[k][n] for k, _, _ in columns] + [truth[n]]):
                fig.paste(Image.fromarray(tile), (x0(c), y))
                draw.rectangle((x0(c) - 1, y - 1, x0(c) + S, y + S), outline='#999999')  # in the gap
            y += S + GAP
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + '.tmp.jpg'
        fig.save(tmp, quality=92, subsampling=0)
        os.replace(tmp, out)

        # The markdown: per-photo PSNR / SSIM / hole detail of each column.
        md = base + '.md'
        rel = lambda p: os.path.relpath(p, os.path.dirname(md))
        lines = [f'![{" | ".join(heads)}]({rel(out)})', '',
                 f'{len(names)} held-out photos ({repo_path(args.photos)}), {S}² centre '
                 f'crops at full resolution, masks from `inpaint-masks` with {100 * lo:g}–{100 * hi:g} % holes '
                 f'(seed {args.seed}); models: ' + ', '.join(f'{m} = `{repo_path(p)}`' for m, p in models) + '. '
                 'Each cell: PSNR (dB) / SSIM / hole detail (`inpaint-eval`: the fill\'s Sobel gradient inside '
                 'the hole over the truth\'s; 1 = the truth\'s detail, below blur, above noise).', '',
                 '| photo | holes | ' + ' | '.join(h for _, h, _ in columns) + ' |',
                 '|---|---|' + '---|' * len(columns)]
        cell = lambda r: f'{float(r["psnr"]):.2f} / {float(r["ssim"]):.4f} / {float(r["hole_detail"]):.2f}'
        for n in names:
            lines.append(f'| {n} | {100 * ratio[n]:.1f} % | ' + ' | '.join(cell(scores[k][n]) for k, _, _ in columns) + ' |')
        mean = lambda k, f: sum(float(scores[k][n][f]) for n in names) / len(names)
        median = lambda k: statistics.median(float(scores[k][n]['hole_detail']) for n in names)
        lines.append('| mean (detail: median) | | ' + ' | '.join(
            f'{mean(k, "psnr"):.2f} / {mean(k, "ssim"):.4f} / {median(k):.2f}' for k, _, _ in columns) + ' |')
        with open(md, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        show = lambda p: p if os.path.relpath(p).startswith('..') else os.path.relpath(p)
        print(f'compare-models: {len(names)} photos x {ncol} columns ({W}x{H} px) -> {show(out)}; '
              f'panels {show(panels)}/; scores {show(md)}')
        print('\n'.join(lines[4:]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
