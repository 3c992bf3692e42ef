"""Face detection behind one small interface, with the backend chosen from settings.

Detectors take an RGB image and return boxes in that image's pixels. Large images are
downscaled to ``max_side`` for detection (the detectors are trained on small faces in
images of a few hundred pixels, and it keeps latency flat) and boxes are mapped back.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
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

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image."""
        ...


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so its long side is at most ``max_side``, and the factor used."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


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


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``): the most accurate backend we measured."""

    name = "yunet"
    default_score = 0.7  # measured: 97.7% recall and precision on group photos

    def __init__(self, model_path: str | Path, score: float = 0.7, max_side: int = 640):
        self.model_path = str(model_path)
        if not Path(self.model_path).is_file():
            raise FileNotFoundError(f"YuNet model {self.model_path} does not exist")
        self.score, self.max_side = score, max_side
        self._local = threading.local()  # a FaceDetectorYN holds per-call state
        self._net(64, 64)  # fail at start-up, not on the first request, if the file is bad

    def _net(self, w: int, h: int):
        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.FaceDetectorYN.create(self.model_path, "", (w, h), self.score, 0.3, 5000)
            self._local.net = net
        net.setInputSize((w, h))
        return net

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, scale = downscale(rgb, self.max_side)
        h, w = small.shape[:2]
        _, found = self._net(w, h).detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if found is None or len(found) == 0:
            return []
        return to_faces(found[:, :4], found[:, 14], scale, rgb.shape[1], rgb.shape[0])


def make_detector(
    kind: str, yunet_model: str, score: float, max_side: int, threads: int = 0
) -> Detector:
    """The configured backend: YuNet when its model file is set, else BlazeFace.

    YuNet runs on OpenVINO where it is installed (the same boxes as OpenCV's, faster; see
    service.yunet_openvino), on OpenCV's DNN module otherwise or with ``yunet-opencv``.
    ``score`` 0 means the backend's own default threshold.
    """
    if kind in ("yunet", "yunet-opencv") or (kind == "auto" and yunet_model):
        if not yunet_model:
            raise ValueError(f"FER_DETECTOR={kind} needs FER_YUNET_MODEL (path to the .onnx file)")
        score = score or YuNetDetector.default_score
        if kind != "yunet-opencv" and importlib.util.find_spec("openvino") is not None:
            from service.yunet_openvino import YuNetOpenVINODetector

            return YuNetOpenVINODetector(yunet_model, score, max_side, threads)
        return YuNetDetector(yunet_model, score, max_side)
    if kind in ("blazeface", "auto"):
        from service.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(score=score or BlazeFaceDetector.default_score, max_side=max_side)
    raise ValueError(f"unknown detector {kind!r}: use yunet, yunet-opencv, blazeface or auto")
