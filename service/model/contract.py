"""The model contract as the service reads it: a version folder's two JSON files, typed.

A version folder (``models/<name>/<version>/``) is all the trainer and the service share:
the SavedModel, ``labels.json`` and ``metadata.json``. ``Contract.read`` parses the two
files once, when a version loads, and refuses a folder whose contract is malformed or asks
for what the service cannot do (ContractError: the load fails with the reason, and the
registry refuses the version as it refuses any failed load). The rest of the service
passes the typed object around. The trainer writes the files (trainer/contract.py); the
two sides share the files, not code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA, LABELS = "metadata.json", "labels.json"
SIGNATURE = "serving_default"
# The resize interpolations service.cropping knows (OpenCV's names, as the trainer writes them).
INTERPOLATIONS = ("INTER_AREA", "INTER_LINEAR", "INTER_CUBIC", "INTER_NEAREST")
# What the crop and resize code feeds the signature: 8-bit gray repeated into 3 channels.
DTYPE, COLOR = "uint8", "gray3"


class ContractError(ValueError):
    """A version folder's metadata.json or labels.json is missing, malformed or unusable."""


@dataclass(frozen=True)
class Preprocessing:
    """How a face region becomes the model input (metadata "preprocessing")."""

    resize_shrink: str = "INTER_LINEAR"  # OpenCV interpolation for a larger face
    resize_enlarge: str = "INTER_LINEAR"  # ... and for a smaller one
    color: str = COLOR
    written: Mapping[str, Any] = field(default_factory=dict)  # as in the file: /v1/models echoes it

    def interpolation(self, height: int, width: int, size: int) -> str:
        """The interpolation that resizes a ``height`` x ``width`` region to ``size``."""
        return self.resize_shrink if height > size or width > size else self.resize_enlarge


@dataclass(frozen=True)
class FaceCrop:
    """How a detector's box becomes the face region (metadata "face_crop")."""

    square: bool = True  # made square around its centre...
    scale: float = 1.0  # ...with its side times this
    written: Mapping[str, Any] = field(default_factory=dict)  # as in the file: /v1/models echoes it


@dataclass(frozen=True)
class Calibration:
    """How the service turns the network's probabilities into confidences (metadata
    "calibration", fitted by the trainer: trainer/calibration.py). A version without it
    is served with its probabilities as they are and no uncertain threshold."""

    temperature: float = 1.0  # softmax(log(p) / T) of the flip-TTA mean
    uncertain_below: float | None = None  # a face whose top confidence is lower is uncertain
    written: Mapping[str, Any] = field(default_factory=dict)  # as in the file


@dataclass(frozen=True)
class Headline:
    """One split's evaluation as /v1/models reports it (None where the export has none)."""

    images: int | None
    accuracy: float | None
    macro_f1: float | None


@dataclass(frozen=True)
class Contract:
    """What the service needs of one model version."""

    name: str
    version: str
    labels: tuple[str, ...]  # class order of the signature's output
    input_size: int  # the signature takes [N, size, size, 3]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    face_crop: FaceCrop = field(default_factory=FaceCrop)
    signature: str = SIGNATURE
    metrics: Mapping[str, Headline] = field(default_factory=dict)  # by split
    created: str | None = None  # when the version was exported (ISO 8601)
    calibration: Calibration | None = None  # None: served uncalibrated, as before it existed

    @classmethod
    def read(cls, folder: Path) -> Contract:
        """The contract of the version in ``folder``; ContractError says what is wrong."""
        return cls.parse(_json(folder / METADATA), _json(folder / LABELS))

    @classmethod
    def parse(cls, meta: Any, labels: Any) -> Contract:
        """The contract from the two files' parsed JSON."""
        if not isinstance(meta, dict):
            raise ContractError(f"{METADATA} must be a JSON object")
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            raise ContractError(f"{LABELS} must be a non-empty list of class names")
        for key in ("name", "version", "input"):
            if key not in meta:
                raise ContractError(f'{METADATA} has no "{key}"')
        created = meta.get("created")
        if created is not None and not isinstance(created, str):
            raise ContractError(f'{METADATA}: "created" must be a string')
        return cls(
            name=str(meta["name"]),
            version=str(meta["version"]),
            labels=tuple(labels),
            input_size=_input_size(_section(meta, "input")),
            preprocessing=_preprocessing(_section(meta, "preprocessing")),
            face_crop=_face_crop(_section(meta, "face_crop")),
            signature=_string(meta, "signature", SIGNATURE),
            metrics=_metrics(_section(meta, "metrics")),
            created=created,
            calibration=_calibration(meta.get("calibration")),
        )


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractError(f"{path.parent} has no {path.name}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContractError(f"{path.name} is not readable JSON: {e}") from None


def _section(obj: dict, key: str) -> dict:
    """``obj[key]``, a JSON object (empty when absent)."""
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise ContractError(f'{METADATA}: "{key}" must be a JSON object')
    return value


def _string(obj: Mapping, key: str, default: str) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ContractError(f'{METADATA}: "{key}" must be a string')
    return value


def _input_size(spec: dict) -> int:
    shape, dtype = spec.get("shape"), spec.get("dtype", DTYPE)
    _, h, w, c = shape if isinstance(shape, list) and len(shape) == 4 else (None, 0, 0, 0)
    if not (type(h) is int and h > 0 and w == h and c == 3):
        raise ContractError(f"{METADATA}: input shape {shape} is not [N, S, S, 3]")
    if dtype != DTYPE:
        raise ContractError(f"{METADATA}: input dtype {dtype!r}; the service sends {DTYPE}")
    return h


def _preprocessing(spec: dict) -> Preprocessing:
    prep = Preprocessing(
        resize_shrink=_string(spec, "resize_shrink", "INTER_LINEAR"),
        resize_enlarge=_string(spec, "resize_enlarge", "INTER_LINEAR"),
        color=_string(spec, "color", COLOR),
        written=spec,
    )
    for name in (prep.resize_shrink, prep.resize_enlarge):
        if name not in INTERPOLATIONS:
            raise ContractError(f"{METADATA}: unknown interpolation {name!r}")
    if prep.color != COLOR:
        raise ContractError(f"{METADATA}: colour {prep.color!r}; the service sends {COLOR}")
    return prep


def _face_crop(spec: dict) -> FaceCrop:
    square, scale = spec.get("square", True), spec.get("scale", 1.0)
    if not isinstance(square, bool) or not _number(scale) or scale <= 0:
        raise ContractError(f"{METADATA}: face_crop {spec} needs a boolean square, a scale > 0")
    return FaceCrop(square, float(scale), spec)


def _calibration(spec: Any) -> Calibration | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ContractError(f'{METADATA}: "calibration" must be a JSON object')
    t, below = spec.get("temperature"), spec.get("uncertain_below")
    if not (isinstance(t, int | float) and _number(t) and 0 < t < float("inf")):
        raise ContractError(f"{METADATA}: calibration.temperature {t!r} is not a number > 0")
    if below is not None and not (
        isinstance(below, int | float) and _number(below) and 0 <= below <= 1
    ):
        raise ContractError(
            f"{METADATA}: calibration.uncertain_below {below!r} is not a number in [0, 1]"
        )
    return Calibration(float(t), None if below is None else float(below), spec)


def _metrics(by_split: dict) -> dict[str, Headline]:
    out = {}
    for split in by_split:
        m = _section(by_split, split)
        values = [m.get(k) for k in ("images", "accuracy", "macro_f1")]
        if not all(v is None or _number(v) for v in values):
            raise ContractError(f"{METADATA}: metrics.{split} has a value that is not a number")
        out[split] = Headline(*values)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
