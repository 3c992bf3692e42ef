"""The detector backend chosen from settings (``FER_DETECTOR``, ``FER_YUNET_MODEL``)."""

from __future__ import annotations

import importlib.util

from service.detection.base import Detector
from service.detection.blazeface import BlazeFaceDetector
from service.detection.yunet_opencv import YuNetDetector
from service.detection.yunet_openvino import YuNetOpenVINODetector


def make_detector(
    kind: str,
    yunet_model: str,
    score: float,
    max_side: int,
    threads: int = 0,
    precision: str = "f32",
) -> Detector:
    """The configured backend: YuNet when its model file is set, else BlazeFace.

    YuNet runs on OpenVINO where it is installed (OpenCV's boxes, faster; see
    service.detection.yunet_openvino), in ``precision`` (``auto``: bf16 where native), on
    OpenCV's DNN module otherwise or with ``yunet-opencv``. ``score`` 0 means the
    backend's own default threshold.
    """
    if kind in ("yunet", "yunet-opencv") or (kind == "auto" and yunet_model):
        if not yunet_model:
            raise ValueError(f"FER_DETECTOR={kind} needs FER_YUNET_MODEL (path to the .onnx file)")
        score = score or YuNetDetector.default_score
        if kind != "yunet-opencv" and importlib.util.find_spec("openvino") is not None:
            return YuNetOpenVINODetector(yunet_model, score, max_side, threads, precision)
        return YuNetDetector(yunet_model, score, max_side)
    if kind in ("blazeface", "auto"):
        return BlazeFaceDetector(score=score or BlazeFaceDetector.default_score, max_side=max_side)
    raise ValueError(f"unknown detector {kind!r}: use yunet, yunet-opencv, blazeface or auto")
