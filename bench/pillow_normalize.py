#!/usr/bin/python3
"""The Pillow baseline for bench/silver: the same work as silver's normalization per image,
over the same cores with a process pool.

Per image, as src/lake/normalize.ts and src/lake/silver.ts do:
  - decode, EXIF orientation, sRGB RGB, alpha flattened on white, longer side <= 512
    (Lanczos), JPEG q90, metadata stripped (Pillow writes no EXIF unless asked);
  - on the 8-bit BT.601 luma of the normalized pixels: brightness (mean), contrast (std),
    sharpness (variance of the 4-neighbour Laplacian over the interior), a 64-bit pHash
    (area-average to 32x32, 8x8 lowest DCT-II coefficients, bits above the median of the
    63 AC ones) and a 64-bit dHash (the 32x32 area-averaged again to 9x8, right brighter than left);
  - SHA-256 of the encoded output (the name silver stores it under), the output written
    to a file and one JSON line of measures per image (silver's row).

--draft uses Pillow's JPEG draft mode (libjpeg's DCT scaling: decode at 1/2, 1/4 or 1/8
size when the output is that much smaller), which is what libvips' shrink-on-load does in
mlcap; the scale is chosen the same way (the largest that keeps the image at least as
large as the output). Without it, EXIF orientation is applied first (ImageOps.exif_transpose
as its documentation shows it), which decodes every image at full size.

--processes N: the pool's size (default: every core); 1 runs the script as most are
written, one image after another in one process.

Usage: pillow_normalize.py [--draft] [--processes N] OUT FILE...
"""
import hashlib
import io
import json
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageOps

MAX_SIDE = 512
DRAFT = False

# cos((2x+1)u pi / 64) for u < 8, x < 32: the 8 lowest frequencies of a 32-point DCT-II.
_u = np.arange(8)[:, None]
_x = np.arange(32)[None, :]
COS = np.cos((2 * _x + 1) * _u * np.pi / 64)


def bits(values):
    out = 0
    for v in values:
        out = (out << 1) | int(bool(v))
    return out


def measures(rgb_image):
    rgb = np.asarray(rgb_image, dtype=np.int32)
    luma = (77 * rgb[..., 0] + 150 * rgb[..., 1] + 29 * rgb[..., 2] + 128) >> 8
    lap = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    grey = Image.fromarray(luma.astype(np.float32), "F")  # float area averages, as silver's
    small = grey.resize((32, 32), Image.BOX)
    px32 = np.asarray(small, dtype=np.float64)
    coef = (COS @ px32 @ COS.T).round(6)  # [v][u]: vertical frequency v, horizontal u
    flat = coef.flatten()
    median = np.sort(flat[1:])[31]
    px98 = np.asarray(small.resize((9, 8), Image.BOX), dtype=np.float64)
    return {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "sharpness": float(lap.var()) if lap.size else 0.0,
        "phash": "%016x" % bits(flat > median),
        "dhash": "%016x" % bits((px98[:, 1:] - px98[:, :-1] > 1e-9).flatten()),
    }


def normalize(args):
    src, out = args
    with Image.open(src) as im:
        width, height = im.size
        if DRAFT:
            scale = min(1.0, MAX_SIDE / max(width, height))
            im.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
            im = ImageOps.exif_transpose(im)
        else:
            im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im, mask=im.split()[-1])
            im = background
        elif im.mode != "RGB":
            im = im.convert("RGB")
        if not DRAFT:
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
        row = measures(im)
        encoded = io.BytesIO()
        im.save(encoded, "JPEG", quality=90)
        data = encoded.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(out, os.path.basename(src)), "wb") as f:
            f.write(data)
        row.update(source=os.path.basename(src), sha256=digest, width=im.size[0], height=im.size[1], bytes=len(data))
        return row


def init(draft):
    global DRAFT
    DRAFT = draft


if __name__ == "__main__":
    argv = sys.argv[1:]
    draft = argv[0] == "--draft"
    if draft:
        argv = argv[1:]
    processes = os.cpu_count()
    if argv[0] == "--processes":
        processes, argv = int(argv[1]), argv[2:]
    out, files = argv[0], argv[1:]
    jobs = [(f, out) for f in files]
    with open(os.path.join(out, "rows.jsonl"), "w") as rows:
        if processes == 1:
            init(draft)
            for job in jobs:
                rows.write(json.dumps(normalize(job)) + "\n")
        else:
            with Pool(processes, initializer=init, initargs=(draft,)) as pool:
                for row in pool.imap(normalize, jobs, chunksize=8):
                    rows.write(json.dumps(row) + "\n")
