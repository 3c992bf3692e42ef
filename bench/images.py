"""The benchmarks' fixed, reproducible image sets (same bytes on every run).

- single: one face, 640x480 JPEG (scikit-image's astronaut, cropped and resized);
- multi: four faces, 1024x1024 JPEG (a 2x2 mosaic of the astronaut, two mirrored);
- phone: one face in a 4032x3024 JPEG of about 3 MB, like a phone photo;
- crops: 48x48 gray faces, classified with detection off (FER2013 PrivateTest images
  from ../shared when present, else 48-px crops of the astronaut's face).
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


SETS = {
    "single": lambda: [single_face_jpeg()],
    "multi": lambda: [multi_face_jpeg()],
    "phone": lambda: [phone_jpeg()],
    "crops": face_crops,
}
