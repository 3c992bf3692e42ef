"""Face detection behind one small interface, with the backend chosen from settings.

``base`` holds the face box, the ``Detector`` protocol and the helpers the backends share;
one module per backend (``yunet_opencv``, ``yunet_openvino``, ``blazeface``) imports only
``base``; ``factory`` picks one of them. Importing this package loads neither OpenVINO
(imported when its backend is built) nor the BlazeFace wheel (only its model file is read).
"""

from service.detection.base import Detector, Face
from service.detection.blazeface import BlazeFaceDetector
from service.detection.factory import make_detector
from service.detection.yunet_opencv import YuNetDetector
from service.detection.yunet_openvino import YuNetOpenVINODetector

__all__ = [
    "BlazeFaceDetector",
    "Detector",
    "Face",
    "YuNetDetector",
    "YuNetOpenVINODetector",
    "make_detector",
]
