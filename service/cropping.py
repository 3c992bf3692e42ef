"""Cut detected faces out of the gray image the way the model's metadata prescribes.

The other half of the preprocessing contract (see trainer/images.py): square box scaled
by ``face_crop.scale``, edges replicated where it leaves the image, OpenCV INTER_AREA to
shrink or INTER_LINEAR to enlarge, gray repeated into three channels.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.detection import Face

_INTERP = {
    "INTER_AREA": cv2.INTER_AREA,
    "INTER_LINEAR": cv2.INTER_LINEAR,
    "INTER_CUBIC": cv2.INTER_CUBIC,
    "INTER_NEAREST": cv2.INTER_NEAREST,
}


def square_box(face: Face, scale: float) -> tuple[int, int, int]:
    """Top-left corner and side of the square crop around ``face``."""
    side = max(1, int(round(max(face.width, face.height) * scale)))
    cx, cy = face.x + face.width / 2, face.y + face.height / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop(gray: np.ndarray, face: Face, crop_rule: dict) -> np.ndarray:
    """The face region of ``gray`` (square and padded if the rule says so)."""
    if not crop_rule.get("square", True):
        return gray[face.y : face.y + face.height, face.x : face.x + face.width]
    x, y, side = square_box(face, float(crop_rule.get("scale", 1.0)))
    h, w = gray.shape
    top, left = max(0, -y), max(0, -x)
    bottom, right = max(0, y + side - h), max(0, x + side - w)
    region = gray[max(0, y) : min(h, y + side), max(0, x) : min(w, x + side)]
    if top or left or bottom or right:
        region = cv2.copyMakeBorder(region, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return region


def to_input(region: np.ndarray, size: int, preprocessing: dict) -> np.ndarray:
    """Resize a gray region to the model input and repeat it to three channels."""
    h, w = region.shape[:2]
    if (h, w) != (size, size):
        key = "resize_shrink" if h > size or w > size else "resize_enlarge"
        interp = _INTERP[preprocessing.get(key, "INTER_LINEAR")]
        region = cv2.resize(region, (size, size), interpolation=interp)
    return np.repeat(region[:, :, None], 3, axis=2)


def batch(gray: np.ndarray, faces: list[Face], metadata: dict, size: int) -> np.ndarray:
    """All faces of one image as one uint8 batch."""
    rule = metadata.get("face_crop", {"square": True, "scale": 1.0})
    prep = metadata.get("preprocessing", {})
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, f in enumerate(faces):
        out[i] = to_input(crop(gray, f, rule), size, prep)
    return out
