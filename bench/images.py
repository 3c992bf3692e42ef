"""The benchmarks' fixed, reproducible image sets (same bytes on every run).

- single: one face, 640x480 JPEG (scikit-image's astronaut, cropped and resized);
- multi: four faces, 1024x1024 JPEG (a 2x2 mosaic of the astronaut, two mirrored);
- phone: one face in a 4032x3024 JPEG of about 3 MB, like a phone photo;
- crops: 48x48 gray faces, classified with detection off (FER2013 PrivateTest images
  from ../shared when present, else 48-px crops of the astronaut's face);
- varied: 20 real photos with faces at 60 different sizes (long side 240-2400 px, aspect
  1:2 to 2:1, fixed seed), as real clients send them: phones, webcams, screenshots and
  resized uploads rarely send two photos of the same size;
- fixed: the same 20 photos all at one size (840x630, the varied set's median long side),
  to compare with: the cost of the sizes alone, without the cost of their variety.
"""

from __future__ import annotations

import io
import os
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(
    os.environ.get("FER_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")
)


def jpeg_bytes(arr: np.ndarray, quality: int = 90, **kw) -> bytes:
    """An array encoded as JPEG (the tests use it too)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


@cache
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def single_face_jpeg() -> bytes:
    return jpeg_bytes(_resize(astronaut()[:384], 640, 480))


def multi_face_jpeg() -> bytes:
    a = astronaut()
    return jpeg_bytes(np.vstack([np.hstack([a, a[:, ::-1]]), np.hstack([a[:, ::-1], a])]))


def phone_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    big = _resize(astronaut()[:384], 4032, 3024).astype(np.int16)
    big += rng.integers(-6, 7, big.shape, dtype=np.int16)  # sensor noise: a realistic size
    return jpeg_bytes(np.clip(big, 0, 255).astype(np.uint8), quality=92)


def face_crops(n: int = 64) -> list[bytes]:
    files = sorted((SHARED / "data" / "fer2013" / "test").glob("*/PrivateTest_*.jpg"))[:n]
    if files:
        return [f.read_bytes() for f in files]
    face = np.asarray(Image.fromarray(astronaut()[30:230, 150:330]).convert("L").resize((48, 48)))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        noisy = np.clip(face.astype(np.int16) + rng.integers(-8, 9, face.shape), 0, 255)
        out.append(jpeg_bytes(np.repeat(noisy.astype(np.uint8)[..., None], 3, axis=2)))
    return out


def read_manifest(data: Path) -> list[dict]:
    """tw-posed's manifest.csv rows (path, label, subject, rater_agree, ...)."""
    import csv

    with (data / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@cache
def source_photos() -> tuple[np.ndarray, ...]:
    """20 photos with faces: the astronaut, the cameraman, 16 tw-posed portraits (one per
    performer, expressions in turn) and two group pictures made of four and three of them,
    when ../shared has tw-posed; else the astronaut mirrored, cropped and tiled."""
    from skimage import data

    photos = [astronaut(), np.repeat(data.camera()[..., None], 3, axis=2)]
    tw = SHARED / "data" / "tw-posed"
    if (tw / "manifest.csv").is_file():
        rows = sorted(read_manifest(tw), key=lambda r: r["path"])
        by_subject: dict[str, list[dict]] = {}
        for r in rows:
            by_subject.setdefault(r["subject"], []).append(r)
        labels = sorted({r["label"] for r in rows})
        portraits = []
        for i, subject in enumerate(sorted(by_subject)[:22]):
            own = by_subject[subject]
            row = next((r for r in own if r["label"] == labels[i % len(labels)]), own[0])
            portraits.append(np.asarray(Image.open(tw / row["path"]).convert("RGB")))
        photos += portraits[:16]
        a, b, c, d, e, f = portraits[16:22]
        photos += [np.vstack([np.hstack([a, b]), np.hstack([c, d])]), np.hstack([e, f, a])]
    while len(photos) < 20:  # without ../shared: variants of the astronaut
        k = len(photos)
        a = astronaut()[:, ::-1] if k % 2 else astronaut()
        photos.append(a[k % 5 * 16 :, : 512 - k % 3 * 32] if k % 4 else np.hstack([a, a]))
    return tuple(photos)


def _letterbox(rgb: np.ndarray, aspect: float) -> np.ndarray:
    """``rgb`` centred on a canvas of width/height ``aspect``, the canvas a blurred,
    stretched copy of the photo (as phones and social apps frame a photo): the faces keep
    their shape whatever the aspect."""
    import cv2

    h, w = rgb.shape[:2]
    ch, cw = (h, round(h * aspect)) if aspect >= w / h else (round(w / aspect), w)
    canvas = cv2.GaussianBlur(cv2.resize(rgb, (cw, ch)), (0, 0), max(cw, ch) / 40)
    y, x = (ch - h) // 2, (cw - w) // 2
    canvas[y : y + h, x : x + w] = rgb
    return canvas


def _sized(rgb: np.ndarray, long_side: int, aspect: float) -> bytes:
    w, h = (
        (long_side, round(long_side / aspect))
        if aspect >= 1
        else (round(long_side * aspect), long_side)
    )
    return jpeg_bytes(_resize(_letterbox(rgb, aspect), w, h), quality=88)


@cache
def varied_jpegs(n: int = 60, seed: int = 0) -> tuple[bytes, ...]:
    """The source photos at ``n`` sizes, each photo in turn: long side log-uniform in
    240-2400 px, aspect log-uniform in 1:2-2:1 (a fixed seed: the same bytes every run)."""
    rng = np.random.default_rng(seed)
    photos = source_photos()
    longs = np.exp(rng.uniform(np.log(240), np.log(2400), n)).round().astype(int)
    aspects = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
    return tuple(
        _sized(photos[i % len(photos)], int(longs[i]), float(aspects[i])) for i in range(n)
    )


@cache
def fixed_jpegs() -> tuple[bytes, ...]:
    """The source photos, each at 840x630 (4:3): one size, about the varied set's median."""
    return tuple(_sized(p, 840, 4 / 3) for p in source_photos())


SETS = {
    "single": lambda: [single_face_jpeg()],
    "multi": lambda: [multi_face_jpeg()],
    "phone": lambda: [phone_jpeg()],
    "crops": face_crops,
    "varied": lambda: list(varied_jpegs()),
    "fixed": lambda: list(fixed_jpegs()),
}
