"""YuNet run by OpenVINO, with OpenCV's own decoding and non-maximum suppression.

``cv2.FaceDetectorYN`` runs the same ONNX network through OpenCV's DNN module; OpenVINO
runs it 2-3x faster on this CPU. The network's outputs are decoded exactly as OpenCV's
``FaceDetectorYNImpl::postProcess`` does (modules/objdetect/src/face_detect.cpp), so in
f32 the boxes and scores match ``cv2.FaceDetectorYN``'s (tests/service/test_detection.py
compares them), and with them its measured recall and precision. In bf16 (the service's
default where the CPU computes it natively) they move slightly, and the score threshold
is lowered by a measured margin so that no face f32 would find is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from service.detection.base import Face, downscale, to_faces

STRIDES = (8, 16, 32)
DIVISOR = 32  # the network's input sides must be multiples of its largest stride
NMS_IOU, TOP_K = 0.3, 5000  # FaceDetectorYN's values in service.detection.yunet_opencv
OUTPUTS = [f"{k}_{s}" for k in ("cls", "obj", "bbox") for s in STRIDES]
# Every network the detector runs is compiled before the first request: a request never
# waits for a compilation (70-300 ms), whatever the size of its photo. The sizes most
# photos pad to once downscaled to 640 px (4:3, 3:2 and 16:9 both ways, and square) each
# get a network compiled for exactly that shape, which OpenVINO runs 10-15% faster than a
# dynamic one (measured: 6.8 vs 7.4 ms at 640x480, one thread); every other size runs on
# one network compiled for any shape up to the largest padded side. Before, each new size
# was compiled on the request path and the latest 16 kept: photos of varied sizes (phones,
# screenshots, crops) recompiled all the time, which made detection 4-5x slower than
# OpenCV's on such traffic (issue #35). The dynamic network still prepares each new shape
# the first time it meets it (about 12 ms here, then cached by OpenVINO), so it is run at
# start on every shape a photo larger than max_side pads to (the long side at max_side:
# 39 shapes at 640, about 1 s per worker); a smaller upload's shape pays it once per worker.
STATIC_SHAPES = (
    (480, 640), (640, 480), (448, 640), (640, 448), (384, 640), (640, 384), (640, 640),
)  # fmt: skip
# In bf16 the network's scores move by up to 0.023 from f32's (p99 0.018; boxes by up to
# 4 px) over the 404 faces of python -m bench.detection, so a face just above the
# threshold in f32 can fall below it: one of the 404 did at 0.7. Lowered by this margin,
# bf16 kept every face f32 keeps, found 4 more near the threshold and no false box, at
# 1.5x f32's speed (docs/performance.md, "Face detectors").
BF16_SCORE_MARGIN = 0.025


class _Net:
    """The network compiled for one input size, with an infer request per thread."""

    def __init__(self, compiled: Any):
        from service.model.openvino_runtime import ThreadRequests

        self.requests = ThreadRequests(compiled)
        # Output index by tensor name (compilation may put another alias first).
        outputs = compiled.outputs
        self.outputs = {
            n: next(i for i, o in enumerate(outputs) if n in o.get_names()) for n in OUTPUTS
        }


class YuNetOpenVINODetector:
    """The YuNet ONNX file compiled by OpenVINO at start: for each of STATIC_SHAPES, and
    once for any other size."""

    name = "yunet"
    runtime = "openvino"
    default_score = 0.7

    def __init__(
        self,
        model_path: str | Path,
        score: float = 0.7,
        max_side: int = 640,
        threads: int = 0,
        precision: str = "f32",
    ):
        from service.model.openvino_runtime import core, cpu_config, resolve_precision

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model {model_path} does not exist")
        self.score, self.max_side = score, max_side
        self.precision = resolve_precision(precision)
        self._threshold = score - BF16_SCORE_MARGIN if self.precision == "bf16" else score
        model = _rgb_uint8_input(core().read_model(str(model_path)))
        config = cpu_config(self.precision, threads)
        largest = _padded(max_side)
        # Shapes of the fixed set that a photo can pad to at this max_side.
        fixed = [(h, w) for h, w in STATIC_SHAPES if max(h, w) <= largest]
        self._static = {shape: _compile(model, config, shape) for shape in fixed}
        self._any = _compile(model, config, None, largest)
        for h, w in fixed:  # fail at start, not on a request; warm up
            self.detect(np.zeros((h, w, 3), np.uint8))
        req = self._any.requests.get()
        for shape in _long_side_shapes(largest):
            if shape not in self._static:
                req.infer([np.zeros((1, *shape, 3), np.uint8)])

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, scale = downscale(rgb, self.max_side)
        h, w = small.shape[:2]
        ph, pw = _padded(h), _padded(w)
        # Zero padding right and bottom, as OpenCV pads.
        padded = cv2.copyMakeBorder(small, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0)
        net = self._static.get((ph, pw), self._any)
        req = net.requests.get()
        req.infer([padded[None]])
        out = {n: req.get_output_tensor(i).data for n, i in net.outputs.items()}
        boxes, scores = decode(out, pw, ph, self._threshold)
        return to_faces(boxes, scores, scale, rgb.shape[1], rgb.shape[0])

    @property
    def networks(self) -> list[_Net]:
        """Every compiled network: one per fixed shape, and the one for any size."""
        return [*self._static.values(), self._any]


def _padded(side: int) -> int:
    """``side`` rounded up to a multiple of DIVISOR, as the network needs (and OpenCV pads)."""
    return -(-side // DIVISOR) * DIVISOR


def _long_side_shapes(largest: int) -> list[tuple[int, int]]:
    """Every padded (H, W) whose long side is ``largest``: where every photo larger than the
    detector's max_side lands, landscape and portrait."""
    sides = range(DIVISOR, largest + 1, DIVISOR)
    return sorted({(s, largest) for s in sides} | {(largest, s) for s in sides})


def _compile(model, config: dict, shape: tuple[int, int] | None, largest: int = 0) -> _Net:
    """``model`` compiled for exactly ``shape`` (H, W), or for any H, W up to ``largest``."""
    import openvino as ov

    from service.model.openvino_runtime import core

    model = model.clone()
    if shape is None:
        side = ov.Dimension(DIVISOR, largest)
        model.reshape({model.inputs[0]: ov.PartialShape([1, side, side, 3])})
    else:
        model.reshape({model.inputs[0]: [1, *shape, 3]})
    return _Net(core().compile_model(model, "CPU", config))


def _rgb_uint8_input(model):
    """The network taking [1, H, W, 3] uint8 RGB of any size: OpenCV feeds it float BGR
    planes; the conversion now runs inside the compiled graph instead of in NumPy."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    model.reshape({model.inputs[0]: ov.PartialShape([1, 3, -1, -1])})
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(
        ov.Layout("NHWC")
    ).set_color_format(ColorFormat.RGB)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.BGR)
    return ppp.build()


def decode(out: dict[str, np.ndarray], pw: int, ph: int, threshold: float):
    """Boxes [x, y, w, h] and scores above ``threshold`` after NMS, as OpenCV decodes them."""
    boxes, scores = [], []
    for s in STRIDES:
        cols = pw // s
        cls = np.clip(out[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(out[f"obj_{s}"].reshape(-1), 0, 1)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= threshold)[0]
        if len(keep) == 0:
            continue
        bbox = out[f"bbox_{s}"].reshape(-1, 4)[keep]
        r, c = np.divmod(keep, cols)
        cx, cy = (c + bbox[:, 0]) * s, (r + bbox[:, 1]) * s
        bw, bh = np.exp(bbox[:, 2]) * s, np.exp(bbox[:, 3]) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1))
        scores.append(score[keep])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    b, sc = np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)
    if len(b) > 1:
        # OpenCV suppresses on integer-truncated boxes; so do we, to keep the same faces.
        kept = cv2.dnn.NMSBoxes(
            b.astype(np.int32).tolist(), sc.tolist(), threshold, NMS_IOU, top_k=TOP_K
        )
        idx = np.asarray(kept, dtype=int).reshape(-1)
        b, sc = b[idx], sc[idx]
    return b, sc
