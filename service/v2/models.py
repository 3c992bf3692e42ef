"""The two models the Open Inference Protocol (v2) serves, over the live model version.

- ``<name>`` (the model's own name, ``emotion``): the classifier on pre-cropped faces,
  input ``faces`` UINT8 [N, S, S, 3], output ``probabilities`` FP32 [N, labels]. The crops
  take the path the service's own crops take: Pillow's gray conversion (as uploads get in
  service.imaging), then service.cropping.to_input, then the classifier (flip TTA included).
- ``<name>-pipeline``: the whole photo pipeline (service.analyzer.Analyzer), input ``image``
  BYTES [N] (encoded images), outputs one row per face of every image: ``image_index``,
  ``boxes`` (x, y, width, height in the image's pixels), ``scores`` (the detector's; -1
  where the whole image was classified), ``emotions`` and ``probabilities``.

Versions are the model folder's numbered versions; only the live one serves. Another
complete version in the folder is answered as Triton answers a version that is not loaded
(503, "is not at ready state"); anything else is 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service import cropping, metrics
from service.analyzer import Analyzer, threshold
from service.api.schemas import parse_options
from service.config import Settings
from service.errors import APIError, BadRequest, InvalidOptions, NotReady
from service.model.calibration import uncertain
from service.model.classifier import Classifier
from service.model.contract import Preprocessing
from service.model.registry import ModelSlot
from service.v2.messages import InferRequest
from service.v2.tensors import Tensor

PIPELINE_SUFFIX = "-pipeline"
FACES, IMAGE, PROBS = "faces", "image", "probabilities"
PIPELINE_OPTIONS = ("max_faces", "min_face_size", "detect")  # request parameters


class ModelNotFound(APIError):
    status, code = 404, "model_not_found"


class VersionUnavailable(APIError):
    """A version in the model folder that this server does not serve (Triton: UNAVAILABLE)."""

    status, code = 503, "model_version_unavailable"


@dataclass(frozen=True)
class InferLimits:
    max_faces_per_request: int  # N of a faces tensor
    max_images: int  # N of an image tensor
    default_max_faces: int  # faces classified per image unless max_faces says

    @classmethod
    def from_settings(cls, settings: Settings) -> InferLimits:
        return cls(settings.max_infer_faces, settings.max_batch_images, settings.max_faces)


@dataclass(frozen=True)
class Served:
    """One protocol model: its name and what it takes and gives, over the live version."""

    name: str
    inputs: Callable[[Classifier], list[dict]]
    outputs: Callable[[Classifier], list[dict]]
    run: Callable[[Classifier, InferRequest, Analyzer, InferLimits], dict[str, Tensor]]
    platform: str


def _faces_inputs(m: Classifier) -> list[dict]:
    s = m.input_size
    return [{"name": FACES, "datatype": "UINT8", "shape": [-1, s, s, 3]}]


def _faces_outputs(m: Classifier) -> list[dict]:
    return [{"name": PROBS, "datatype": "FP32", "shape": [-1, len(m.labels)]}]


def _pipeline_inputs(m: Classifier) -> list[dict]:
    return [{"name": IMAGE, "datatype": "BYTES", "shape": [-1]}]


def _pipeline_outputs(m: Classifier) -> list[dict]:
    return [
        {"name": "image_index", "datatype": "INT32", "shape": [-1]},
        {"name": "boxes", "datatype": "INT32", "shape": [-1, 4]},
        {"name": "scores", "datatype": "FP32", "shape": [-1]},
        {"name": "emotions", "datatype": "BYTES", "shape": [-1]},
        {"name": PROBS, "datatype": "FP32", "shape": [-1, len(m.labels)]},
    ]


def served_models(live: Classifier, detector: str) -> dict[str, Served]:
    return {
        live.name: Served(live.name, _faces_inputs, _faces_outputs, classify_faces, live.runtime),
        live.name + PIPELINE_SUFFIX: Served(
            live.name + PIPELINE_SUFFIX,
            _pipeline_inputs,
            _pipeline_outputs,
            analyze_images,
            f"pipeline ({detector} + {live.runtime})",
        ),
    }


def lookup(
    slot: ModelSlot, name: str, version: str | None, detector: str
) -> tuple[Served, Classifier]:
    """The protocol model and live classifier a URL names; 404 for an unknown name or
    version, 503 for a version that is not served or a model not ready yet."""
    live = slot.peek()
    if live is None:
        raise NotReady(slot.status_error() or "the model is still loading")
    served = served_models(live, detector).get(name)
    if served is None:
        raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
    if version is not None and version != live.version:
        if slot.has_version(version):
            raise VersionUnavailable(f"'{name}' version {version} is not at ready state")
        raise ModelNotFound(f"Request for unknown model: '{name}' version {version} is not found")
    if not live.ready:
        raise NotReady(slot.status_error() or "the model is still loading")
    return served, live


def metadata(served: Served, live: Classifier) -> dict:
    cal = live.calibration
    return {
        "name": served.name,
        "versions": [live.version],
        "platform": served.platform,
        "inputs": served.inputs(live),
        "outputs": served.outputs(live),
        "parameters": {
            "labels": list(live.labels),
            "input_size": live.input_size,
            # The probabilities outputs are calibrated (softmax(log(p) / T) of the flip-TTA
            # mean) when this is true; a face is uncertain under uncertain_below.
            "calibrated": cal is not None,
            "temperature": cal.temperature if cal else None,
            "uncertain_below": cal.uncertain_below if cal else None,
        },
    }


def infer(
    served: Served, live: Classifier, req: InferRequest, analyzer: Analyzer, limits: InferLimits
) -> dict[str, Tensor]:
    """Every output of ``served`` for the request, once its inputs and outputs are checked."""
    check_inputs(served, live, req)
    check_outputs(served, live, req)
    return served.run(live, req, analyzer, limits)


def check_outputs(served: Served, live: Classifier, req: InferRequest) -> None:
    """Every requested output exists, and classification is asked of probabilities only."""
    names = {o["name"] for o in served.outputs(live)}
    for r in req.outputs or []:
        if r.name not in names:
            raise BadRequest(f"unexpected inference output '{r.name}' for model '{served.name}'")
        if r.classification and r.name != PROBS:
            raise BadRequest(f"output '{r.name}' has no classes: classification is for '{PROBS}'")


def labels_of(live: Classifier) -> dict[str, list[str]]:
    """The class names of each output that has classes (for the classification extension)."""
    return {PROBS: list(live.labels)}


def check_inputs(served: Served, live: Classifier, req: InferRequest) -> Tensor:
    """The one input of ``served``, with its datatype and shape checked."""
    (spec,) = served.inputs(live)
    extra = sorted(set(req.inputs) - {spec["name"]})
    if extra:
        raise BadRequest(f"unexpected inference input '{extra[0]}' for model '{served.name}'")
    t = req.inputs.get(spec["name"])
    if t is None:
        raise BadRequest(f"model '{served.name}' expects input '{spec['name']}'")
    want = spec["shape"]
    if t.datatype != spec["datatype"]:
        raise BadRequest(
            f"inference input '{t.name}' data-type is '{t.datatype}', but model "
            f"'{served.name}' expects '{spec['datatype']}'"
        )
    if len(t.shape) != len(want) or any(
        w not in (-1, d) for w, d in zip(want, t.shape, strict=True)
    ):
        raise BadRequest(
            f"unexpected shape for input '{t.name}' for model '{served.name}': "
            f"expected {want}, got {t.shape}"
        )
    return t


def classify_faces(
    live: Classifier, req: InferRequest, analyzer: Analyzer, limits: InferLimits
) -> dict[str, Tensor]:
    faces = req.inputs[FACES].array
    if len(faces) > limits.max_faces_per_request:
        raise BadRequest(
            f"{len(faces)} faces in one request; the limit is {limits.max_faces_per_request}"
        )
    t0 = time.perf_counter()
    batch = crops_to_input(faces, live.input_size, live.contract.preprocessing)
    # Straight to the model, not through the dynamic batcher: the request is a batch
    # already, and the batcher's point is to merge single photos' faces.
    probs = live.predict(batch) if len(batch) else np.zeros((0, len(live.labels)))
    metrics.STAGE.labels("classify").observe(time.perf_counter() - t0)
    below = threshold(None, live)
    metrics.observe_faces(
        [live.labels[int(np.argmax(p))] for p in probs],
        [uncertain(float(np.max(p)), below) for p in probs],
    )
    return {PROBS: Tensor(PROBS, "FP32", np.asarray(probs, np.float32))}


def crops_to_input(crops: np.ndarray, size: int, preprocessing: Preprocessing) -> np.ndarray:
    """[N, S, S, 3] RGB crops as the classifier's input, the way the service's own crops
    get there: Pillow's "L" conversion (service.imaging), then service.cropping.to_input."""
    n = len(crops)
    if n == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    # One image of N stacked crops: the conversion is per pixel, so this is N conversions.
    strip = Image.fromarray(np.ascontiguousarray(crops, np.uint8).reshape(n * size, size, 3))
    gray = np.asarray(strip.convert("L"), np.uint8).reshape(n, size, size)
    return np.stack([cropping.to_input(g, size, preprocessing) for g in gray])


def analyze_images(
    live: Classifier, req: InferRequest, analyzer: Analyzer, limits: InferLimits
) -> dict[str, Tensor]:
    images = req.inputs[IMAGE].array
    if not 1 <= len(images) <= limits.max_images:
        raise BadRequest(f"send 1 to {limits.max_images} images, not {len(images)}")
    opts = _options(req.parameters, limits.default_max_faces)
    index, boxes, scores, emotions, probs = [], [], [], [], []
    for i, data in enumerate(images):
        analysis = analyzer.analyze(bytes(data), opts, live)
        names = analysis.emotions  # /predict's ranking: the first of tied labels wins
        metrics.observe_image(analysis.seconds, names, analysis.uncertain)
        for face, name in zip(analysis.faces, names, strict=True):
            index.append(i)
            boxes.append([face.box.x, face.box.y, face.box.width, face.box.height])
            scores.append(-1.0 if face.score is None else face.score)
            emotions.append(name.encode())
            probs.append(face.probs)  # unrounded, as the model gave them
    n, c = len(index), len(live.labels)
    emotion_array = np.empty(n, dtype=object)
    emotion_array[:] = emotions
    return {
        "image_index": Tensor("image_index", "INT32", np.array(index, np.int32)),
        "boxes": Tensor("boxes", "INT32", np.array(boxes, np.int32).reshape(n, 4)),
        "scores": Tensor("scores", "FP32", np.array(scores, np.float32)),
        "emotions": Tensor("emotions", "BYTES", emotion_array),
        PROBS: Tensor(PROBS, "FP32", np.array(probs, np.float32).reshape(n, c)),
    }


def _options(parameters: dict, default_max_faces: int):
    raw = {k: parameters[k] for k in PIPELINE_OPTIONS if k in parameters}
    try:
        return parse_options([raw], default_max_faces)
    except InvalidOptions as e:
        detail = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in (e.fields or {}).items())
        raise BadRequest(f"invalid parameters: {detail}") from None
