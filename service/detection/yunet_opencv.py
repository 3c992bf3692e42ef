"""YuNet run by OpenCV's DNN module (``cv2.FaceDetectorYN``): the reference YuNet backend.

Needs nothing beyond OpenCV; ``FER_DETECTOR=yunet-opencv`` forces it where OpenVINO is
installed. The OpenVINO backend (service.detection.yunet_openvino) is checked against it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from service.detection.base import Face, downscale, to_faces


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``): the most accurate backend we measured."""

    name = "yunet"
    runtime, precision = "opencv", "f32"
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
