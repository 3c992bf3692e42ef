"""What every detector backend shares: the face box, the interface, and the downscaling.

Detectors take an RGB image and return boxes in that image's pixels. Large images are
downscaled to ``max_side`` for detection (the detectors are trained on small faces in
images of a few hundred pixels, and it keeps latency flat) and boxes are mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Face:
    """A detected face box in original-image pixels."""

    x: int
    y: int
    width: int
    height: int
    score: float

    @property
    def area(self) -> int:
        return self.width * self.height


class Detector(Protocol):
    name: str
    runtime: str  # what executes its network: opencv or openvino (for /ready, /v1/models)
    precision: str  # what that computes in: f32 or bf16

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image."""
        ...


# Shrinking by at most this much, bilinear resampling replaces pixel-area averaging: on
# the 60 photos of bench.images' varied set (decoded as uploads are, so shrunk by 1-2.5x)
# it cost 0.6 instead of 2.9 ms a photo, and YuNet found the same 75 faces, every box
# within IoU 0.978 of the area-averaged image's. A larger shrink (a big PNG, or a JPEG
# with FER_DECODE_MAX_SIDE=0) keeps area averaging, which does not alias.
LINEAR_UP_TO = 2.5


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so its long side is at most ``max_side``, and the factor used."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_LINEAR if scale * LINEAR_UP_TO >= 1 else cv2.INTER_AREA
    return cv2.resize(rgb, size, interpolation=interpolation), scale


def to_faces(boxes: np.ndarray, scores: np.ndarray, scale: float, w: int, h: int) -> list[Face]:
    """Boxes [x, y, w, h] found at ``scale`` mapped back and clipped to a ``w`` x ``h`` image.

    Boxes with a non-finite coordinate or score are dropped: a detector's decoding can
    overflow on degenerate inputs (an image one pixel high and thousands wide gave an
    infinite box), and no face lies there.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) / scale
    scores = np.asarray(scores, np.float64).reshape(-1)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    faces = []
    for (bx, by, bw, bh), s in zip(boxes[finite], scores[finite], strict=True):
        x0, y0 = max(0, int(round(bx))), max(0, int(round(by)))
        x1, y1 = min(w, int(round(bx + bw))), min(h, int(round(by + bh)))
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            faces.append(Face(x0, y0, x1 - x0, y1 - y0, round(float(s), 4)))
    return faces
