"""What reduced-scale JPEG decoding (FER_DECODE_MAX_SIDE) costs in answers and saves in time,
on faces that are small in large photos.

A JPEG at least twice FER_DECODE_MAX_SIDE on its long side is decoded at 1/2, 1/4 or 1/8
scale (libjpeg's DCT scaling), never below that side (service/imaging.py). It is cheaper
to decode and to shrink for detection, and a face keeps fewer pixels: that matters only
where a face is small in a large photo. So each tw-posed photo (256 px, head and
shoulders) is placed, shrunk or enlarged, in a large photo: a 2400x1800 canvas, landscape
or portrait by turns, of smooth noise, the photo at 0.6x or 1.5x by turns (the face about
90 or 220 px wide), at a random place (fixed seed), saved as a JPEG at quality 90. Each is
then analysed as an upload is at every setting given (decode, YuNet, the largest face
cropped and classified, flip TTA, calibration off), side by side in one run:

    python -m bench.decode_scale [--sides 1600,800,640] [--limit N]

Printed per setting and face size: faces found, accuracy (the posed label; no face is
wrong), the share of answers equal to the first setting's, the mean absolute change of
the top probability, and the mean decode and whole-call milliseconds. tw-posed is a
validation set, never trained on; nothing made here is kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from bench.images import SHARED, jpeg_bytes, read_manifest
from bench.machine import header
from bench.pipeline import make_analyzer

CANVAS = (1800, 2400)  # (H, W), landscape; every other photo is portrait
SCALES = (0.6, 1.5)  # the photo's size in the canvas; the face is about 60% of it


def large_photos(rows: list[dict], data, seed: int = 0) -> list[tuple[bytes, float]]:
    """Each tw-posed photo in a large JPEG, with the scale it was placed at."""
    rng = np.random.default_rng(seed)
    out = []
    for i, row in enumerate(rows):
        photo = cv2.cvtColor(cv2.imread(str(data / row["path"])), cv2.COLOR_BGR2RGB)
        h, w = CANVAS if i % 2 == 0 else CANVAS[::-1]
        # Smooth noise: a background with texture, not a flat field the detector ignores.
        small = rng.integers(40, 215, (h // 60 + 1, w // 60 + 1, 3), dtype=np.uint8)
        canvas = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        scale = SCALES[(i // 2) % len(SCALES)]
        side = round(photo.shape[0] * scale)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        face = cv2.resize(photo, (side, side), interpolation=interp)
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        canvas[y : y + side, x : x + side] = face
        out.append((jpeg_bytes(canvas, quality=90), scale))
    return out


def measure(side: int, photos: list[tuple[bytes, float]]) -> dict:
    from service.analyzer import Options
    from service.imaging import decode

    analyzer = make_analyzer(decode_max_side=side, calibration=False)
    model = analyzer.models.current()
    opts = Options(max_faces=1, whole_if_no_face=False)
    probs = np.full((len(photos), len(model.labels)), np.nan, np.float32)
    decode_ms, call_ms = np.zeros(len(photos)), np.zeros(len(photos))
    for i, (body, _) in enumerate(photos):
        t0 = time.perf_counter()
        img = decode(body, analyzer.max_pixels, analyzer.decode_max_side)
        t1 = time.perf_counter()
        found = analyzer.classify(img, opts, model)
        t2 = time.perf_counter()
        decode_ms[i], call_ms[i] = (t1 - t0) * 1000, (t2 - t0) * 1000
        if found.faces:
            probs[i] = found.probs[0]
    return {"probs": probs, "labels": list(model.labels), "decode": decode_ms, "call": call_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sides", default="1600,800,640", help="FER_DECODE_MAX_SIDE values")
    ap.add_argument("--limit", type=int, default=0, help="the first N photos (0: all)")
    ap.add_argument("--data", default=str(SHARED / "data" / "tw-posed"))
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "manifest.csv").is_file():
        raise SystemExit(f"{data} has no manifest.csv: this benchmark needs tw-posed")
    rows = read_manifest(data)[: args.limit or None]
    sides = [int(s) for s in args.sides.split(",")]
    print(header())
    photos = large_photos(rows, data)
    scales = np.array([s for _, s in photos])
    results = {side: measure(side, photos) for side in sides}
    labels = results[sides[0]]["labels"]
    truth = np.array([labels.index(r["label"]) for r in rows])
    first = results[sides[0]]["probs"]
    print(f"{len(photos)} tw-posed photos in {CANVAS[1]}x{CANVAS[0]} JPEGs (q90)")
    print(
        f"{'decode_max_side':>15} {'photo scale':>11} {'found':>6} {'accuracy':>8} "
        f"{'same answer':>11} {'|d top p|':>9} {'decode ms':>9} {'call ms':>8}"
    )
    for side in sides:
        r = results[side]
        for scale in (*SCALES, None):
            m = np.ones(len(photos), bool) if scale is None else scales == scale
            p, f = r["probs"][m], first[m]
            found = ~np.isnan(p).any(axis=1)
            both = found & ~np.isnan(f).any(axis=1)
            answer = np.where(found, np.nan_to_num(p).argmax(axis=1), -1)
            same = (p[both].argmax(axis=1) == f[both].argmax(axis=1)).mean()
            dtop = np.abs(
                p[both].max(axis=1) - f[both][np.arange(both.sum()), f[both].argmax(axis=1)]
            )
            print(
                f"{side:>15} {('all' if scale is None else f'{scale}x'):>11} "
                f"{found.mean():>6.1%} {(answer == truth[m]).mean():>8.1%} {same:>11.1%} "
                f"{dtop.mean():>9.4f} {r['decode'][m].mean():>9.2f} {r['call'][m].mean():>8.2f}"
            )


if __name__ == "__main__":
    main()
