"""Decode dataset images into the model's input format, in parallel, skipping bad files.

This is the trainer's side of the preprocessing contract (trainer.contract.PREPROCESSING,
which every export's metadata repeats): decode with Pillow, convert to 8-bit grayscale
("L"), resize with the OpenCV interpolation the contract names for shrinking or enlarging,
and repeat the gray channel three times. The service implements the same steps from the
metadata; a test checks they agree.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.contract import INTERPOLATIONS, PREPROCESSING
from trainer.errors import DataError

# The one colour rule this module applies: "gray3" is Pillow's 8-bit luma, then three
# equal channels (to_model_input). Another rule in the contract fails here, at import.
_PILLOW_MODE = {"gray3": "L"}[PREPROCESSING.color]
# The OpenCV flag of each interpolation a contract may name (trainer.contract refuses others).
_INTERP = {name: getattr(cv2, name) for name in INTERPOLATIONS}
BLANK_STD = 2.0  # pixel standard deviation below which an image counts as blank


def read_pixels(path: Path) -> np.ndarray:
    """Decode one image file to a 2-D uint8 gray array (first frame of animations)."""
    with Image.open(path) as im:
        im.seek(0)
        return np.asarray(im.convert(_PILLOW_MODE), dtype=np.uint8)


def to_model_input(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a gray array to ``size`` x ``size`` and repeat it into three channels."""
    h, w = gray.shape[:2]
    if (h, w) != (size, size):
        interp = _INTERP[PREPROCESSING.interpolation(h, w, size)]
        gray = cv2.resize(gray, (size, size), interpolation=interp)
    return np.repeat(gray[:, :, None], 3, axis=2)


def pixel_hash(gray: np.ndarray) -> str:
    """A hash of the decoded pixels (and shape): equal for byte-different re-encodings."""
    return hashlib.blake2b(gray.tobytes() + repr(gray.shape).encode(), digest_size=12).hexdigest()


@dataclass
class Decoded:
    """Decoded images of a list of files, in the same order, with what failed."""

    images: np.ndarray  # [N, size, size, 3] uint8, only the files that decoded
    ok: list[int]  # indices into the input list of the files in ``images``
    hashes: list[str]
    stds: list[float]
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _decode_one(path: Path, size: int):
    try:
        gray = read_pixels(path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return None, f"{type(e).__name__}: {e}"
    if gray.size == 0:
        return None, "image has no pixels"
    return (to_model_input(gray, size), pixel_hash(gray), float(gray.std())), None


def decode_all(paths: list[Path], size: int, max_bad: int = 100, workers: int = 4) -> Decoded:
    """Decode every file, skipping unreadable ones; stop when more than ``max_bad`` fail."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    ok: list[int] = []
    hashes: list[str] = []
    stds: list[float] = []
    failed: list[tuple[Path, str]] = []
    with ThreadPoolExecutor(workers) as pool:
        for i, (res, err) in enumerate(pool.map(lambda p: _decode_one(p, size), paths)):
            if err is not None:
                failed.append((paths[i], err))
                if len(failed) > max_bad:
                    listing = "\n".join(f"  {p}: {e}" for p, e in failed[:20])
                    raise DataError(
                        f"more than {max_bad} unreadable images; stopping. First ones:\n{listing}"
                    )
                continue
            out[len(ok)], h, s = res
            ok.append(i)
            hashes.append(h)
            stds.append(s)
    return Decoded(out[: len(ok)], ok, hashes, stds, failed)
