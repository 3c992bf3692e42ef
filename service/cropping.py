"""Cut detected faces out of the gray image the way the model's contract prescribes.

The other half of the preprocessing contract (see trainer/data/images.py), as
service.model.contract reads it: square box scaled by ``face_crop.scale``, edges replicated
where it leaves the image, OpenCV INTER_AREA to shrink or INTER_LINEAR to enlarge, gray
repeated into three channels.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.detection import Face
from service.model.contract import INTERPOLATIONS, Contract, FaceCrop, Preprocessing

_INTERP = {name: getattr(cv2, name) for name in INTERPOLATIONS}


def square_box(face: Face, scale: float) -> tuple[int, int, int]:
    """Top-left corner and side of the square crop around ``face``."""
    side = max(1, int(round(max(face.width, face.height) * scale)))
    cx, cy = face.x + face.width / 2, face.y + face.height / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop(gray: np.ndarray, face: Face, rule: FaceCrop) -> np.ndarray:
    """The face region of ``gray`` (square and padded if the rule says so)."""
    if not rule.square:
        return gray[face.y : face.y + face.height, face.x : face.x + face.width]
    x, y, side = square_box(face, rule.scale)
    h, w = gray.shape
    top, left = max(0, -y), max(0, -x)
    bottom, right = max(0, y + side - h), max(0, x + side - w)
    region = gray[max(0, y) : min(h, y + side), max(0, x) : min(w, x + side)]
    if top or left or bottom or right:
        region = cv2.copyMakeBorder(region, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return region


def to_input(region: np.ndarray, size: int, prep: Preprocessing) -> np.ndarray:
    """Resize a gray region to the model input and repeat it to three channels."""
    h, w = region.shape[:2]
    if (h, w) != (size, size):
        interp = _INTERP[prep.interpolation(h, w, size)]
        region = cv2.resize(region, (size, size), interpolation=interp)
    return np.repeat(region[:, :, None], 3, axis=2)


def batch(gray: np.ndarray, faces: list[Face], contract: Contract) -> np.ndarray:
    """All faces of one image as one uint8 batch."""
    size = contract.input_size
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, f in enumerate(faces):
        out[i] = to_input(crop(gray, f, contract.face_crop), size, contract.preprocessing)
    return out
