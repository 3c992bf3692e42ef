"""Fakes for the video tests: a detector that finds the bright squares of
``bench.videos.blobs`` clips wherever they move, and levels the fake model reads as a
given emotion."""

from __future__ import annotations

import cv2
import numpy as np

from service.detection import Face
from tests.conftest import CLASSES

# FakeModel's class is the crop's mean brightness in sevenths of 256; the crop (face box
# x 1.1, square) takes in 21% black around a square blob, hence the factor.
CROP_AREA = 1.1**2


def level(emotion: str) -> int:
    """A blob brightness that FakeModel reads as ``emotion`` (angry is too dark to see)."""
    k = CLASSES.index(emotion)
    return min(255, round((k + 0.5) * 256 / 7 * CROP_AREA))


class BlobDetector:
    """Boxes of the bright (> 30) connected regions of a frame, as a detector returns them."""

    name = "blobs"
    runtime, precision = "numpy", "f32"

    def __init__(self, min_side: int = 10):
        self.min_side = min_side
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        mask = (rgb.max(axis=2) > 30).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        return [
            Face(int(x), int(y), int(w), int(h), 0.9)
            for x, y, w, h, _ in stats[1:n]
            if min(w, h) >= self.min_side
        ]
