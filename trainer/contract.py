"""The model contract: ``metadata.json`` and ``labels.json`` of an exported version, typed.

A version folder (``models/<name>/<version>/``) is all the trainer and the service share:
the SavedModel and these two files. ``ModelContract.read`` parses a folder's metadata once,
refusing a folder that is not an export or whose contract is malformed, and the rest of
the trainer passes the typed object around; ``ModelContract.write`` writes both files in
the exact form the service reads. The service has its own reader of the same files
(service/model/contract.py: its ``Contract``, ``Preprocessing``, ``FaceCrop`` and ``ContractError``
are other classes than these, and its ``version`` is a string), lenient where this one is
strict for what it writes; the two meet only on disk (tests/test_contract.py checks they
agree).

The preprocessing and face-crop rules this trainer applies (trainer/data/images.py,
trainer/model.py) are defined here too, once: what an export's metadata says is what
training did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from trainer.errors import TrainerError

METADATA, LABELS = "metadata.json", "labels.json"
FORMAT = "tf_saved_model"
SIGNATURE = "serving_default"
OUTPUT = "probabilities, one per label, in labels order"
# The resize interpolations trainer/data/images.py knows (OpenCV's flag names); a contract
# naming another one is refused when read.
INTERPOLATIONS = ("INTER_AREA", "INTER_LINEAR", "INTER_CUBIC", "INTER_NEAREST")


class ContractError(TrainerError):
    """A folder is not an exported model version, or its contract files are malformed.

    ``reason`` is the message without the folder, for callers that name the folder their
    own way (``--teacher X: <reason>``).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Preprocessing:
    """What is done to a face before the signature sees it (metadata "preprocessing")."""

    decode: str  # how an image file becomes pixels
    color: str  # "gray3": 8-bit luma (Pillow "L") repeated into three channels
    resize_shrink: str  # OpenCV interpolation when the face is larger than the input
    resize_enlarge: str  # ... and when it is smaller
    scaling: str  # where pixel values are scaled, and how
    dtype: str  # of the pixels the signature takes

    def interpolation(self, height: int, width: int, size: int) -> str:
        """The OpenCV interpolation that resizes a ``height`` x ``width`` face to ``size``."""
        return self.resize_shrink if height > size or width > size else self.resize_enlarge


@dataclass(frozen=True)
class FaceCrop:
    """How a detector's box becomes the face the model sees (metadata "face_crop")."""

    square: bool  # the box is made square around its centre
    scale: float  # ... and its side multiplied by this


@dataclass(frozen=True)
class InputSpec:
    """The signature's input (metadata "input"): square 3-channel uint8 images, 0..255."""

    size: int
    dtype: str = "uint8"

    @property
    def shape(self) -> list[int | None]:
        return [None, self.size, self.size, 3]

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.shape, "dtype": self.dtype, "range": [0, 255]}


# MobileNetV2's input scaling, applied by the model's first layer (trainer/model.py).
PIXEL_DIVISOR, PIXEL_OFFSET = 127.5, -1.0
# The rules this trainer applies to every image, and writes into every export.
PREPROCESSING = Preprocessing(
    decode="Pillow, EXIF orientation applied, first frame",
    color="gray3",
    resize_shrink="INTER_AREA",
    resize_enlarge="INTER_LINEAR",
    scaling=f"inside the model (x / {PIXEL_DIVISOR:g} - {-PIXEL_OFFSET:g})",
    dtype="uint8",
)
# The dataset's faces are tight, roughly aligned square crops; a detector box is made
# square and scaled by this factor so service crops look like training images. Measured:
# YuNet on 775 FER2013 PrivateTest faces (upscaled to 160 px, padded to 400) gives boxes
# whose long side is the crop's side times 0.99 (median; quartiles 0.91-1.08), centred
# within 1.3% of it, so the box itself, squared, is the training framing.
FACE_CROP = FaceCrop(square=True, scale=1.0)


@dataclass(frozen=True)
class ModelContract:
    """An exported version's metadata: the contract fields typed, the rest as details."""

    name: str
    version: int
    labels: tuple[str, ...]  # class order of the signature's output
    input: InputSpec
    preprocessing: Preprocessing
    face_crop: FaceCrop
    signature: str = SIGNATURE
    # Every other key of metadata.json (provenance, training, dataset, metrics, ...), in
    # file order; JSON values, read as they are written.
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls, name: str, version: int, labels: Sequence[str], size: int, **details: Any
    ) -> ModelContract:
        """The contract of a new export by this trainer: its rules, ``size`` px, ``details``."""
        return cls(
            name=name,
            version=version,
            labels=tuple(labels),
            input=InputSpec(size, PREPROCESSING.dtype),
            preprocessing=PREPROCESSING,
            face_crop=FACE_CROP,
            details=details,
        )

    @property
    def input_size(self) -> int:
        return self.input.size

    @property
    def metrics(self) -> Mapping[str, Any]:
        """Evaluation results per split, as the export measured them (none: empty)."""
        return self.details.get("metrics", {})

    def with_details(self, **details: Any) -> ModelContract:
        """A copy with ``details`` set: a new key goes last, a present one keeps its place."""
        return replace(self, details={**self.details, **details})

    def to_json(self) -> dict[str, Any]:
        """The metadata as a JSON object, keys in the order every export has written them."""
        return {
            "name": self.name,
            "version": self.version,
            "format": FORMAT,
            "signature": self.signature,
            "input": self.input.to_json(),
            "output": OUTPUT,
            "labels": list(self.labels),
            "preprocessing": asdict(self.preprocessing),
            "face_crop": asdict(self.face_crop),
            **self.details,
        }

    def write(self, folder: Path) -> None:
        """Write ``labels.json`` and ``metadata.json`` into ``folder``."""
        (folder / LABELS).write_text(json.dumps(list(self.labels), indent=2) + "\n")
        # default=str, as every export has had it: a value JSON has no type for (a Path)
        # is written as its text rather than failing the export at its very end.
        text = json.dumps(self.to_json(), indent=2, default=str)
        (folder / METADATA).write_text(text + "\n")

    @classmethod
    def read(cls, folder: Path) -> ModelContract:
        """Parse and check ``folder``'s metadata.json.

        Raises:
            ContractError: no metadata.json there, or a contract field missing or malformed.
        """
        meta = _json_file(folder, METADATA, dict)
        check = _Checker(folder / METADATA)
        if meta.get("format", FORMAT) != FORMAT:
            raise check.error("format", f"is {meta['format']!r}, not {FORMAT!r}")
        typed = cls(
            name=check.typed("name", meta.get("name"), str),
            version=check.typed("version", meta.get("version"), int),
            labels=check.labels("labels", meta.get("labels")),
            input=check.input(meta.get("input")),
            preprocessing=check.preprocessing(meta.get("preprocessing")),
            face_crop=check.record("face_crop", meta.get("face_crop"), FaceCrop),
            signature=check.typed("signature", meta.get("signature", SIGNATURE), str),
        )
        # Without details, to_json writes exactly the keys the typed fields stand for: every
        # other key is a detail.
        typed_keys = typed.to_json()
        return replace(typed, details={k: v for k, v in meta.items() if k not in typed_keys})


def read_labels(folder: Path) -> list[str]:
    """``folder``'s labels.json: the class order the service reports.

    Raises:
        ContractError: the file is missing or not a list of class names.
    """
    labels = _json_file(folder, LABELS, list)
    return list(_Checker(folder / LABELS).labels("labels", labels))


def _json_file(folder: Path, name: str, kind: type) -> Any:
    path = folder / name
    if not path.is_file():
        reason = f"not an exported model version (no {name})"
        raise ContractError(f"{folder} is {reason}", reason)
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ContractError(
            f"{path} is not readable JSON: {e}", f"{name} is not readable JSON: {e}"
        ) from e
    if not isinstance(value, kind):
        problem = f"holds a JSON {type(value).__name__}, not a {kind.__name__}"
        raise ContractError(f"{path} {problem}", f"{name} {problem}")
    return value


# The JSON types of the fields of Preprocessing and FaceCrop, by their annotation.
_JSON_TYPES: dict[type, tuple[type, ...]] = {str: (str,), bool: (bool,), float: (int, float)}


class _Checker:
    """Checks the values of one contract file, naming the file and the key it refuses."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, key: str, problem: str) -> ContractError:
        return ContractError(
            f"{self.path}: {key!r} {problem}", f"{key!r} in {self.path.name} {problem}"
        )

    def typed(self, key: str, value: Any, *kinds: type) -> Any:
        # bool is an int to Python, never to the contract (a version, a scale).
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(key, f"must be of type {names}, not {value!r}")
        return value

    def labels(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a non-empty list of class names, not {value!r}")
        return tuple(value)

    def input(self, value: Any) -> InputSpec:
        shape = value.get("shape") if isinstance(value, dict) else None
        size = shape[1] if isinstance(shape, list) and len(shape) == 4 else None
        if not (
            isinstance(size, int)
            and not isinstance(size, bool)
            and size > 0
            and shape == [None, size, size, 3]
        ):
            raise self.error("input", f"must have the shape [None, size, size, 3], not {value!r}")
        if value.get("dtype") != "uint8" or value.get("range", [0, 255]) != [0, 255]:
            raise self.error("input", f"must be uint8 pixels in 0..255, not {value!r}")
        return InputSpec(size, "uint8")

    def preprocessing(self, value: Any) -> Preprocessing:
        prep: Preprocessing = self.record("preprocessing", value, Preprocessing)
        for key, name in [
            ("resize_shrink", prep.resize_shrink),
            ("resize_enlarge", prep.resize_enlarge),
        ]:
            if name not in INTERPOLATIONS:
                choices = ", ".join(INTERPOLATIONS)
                raise self.error(f"preprocessing.{key}", f"must be one of {choices}, not {name!r}")
        return prep

    def record(self, key: str, value: Any, kind: type) -> Any:
        names = [f.name for f in fields(kind)]
        if not isinstance(value, dict) or set(value) != set(names):
            raise self.error(key, f"must have exactly the keys {names}, not {value!r}")
        hints = get_type_hints(kind)
        return kind(
            **{
                name: self.typed(f"{key}.{name}", value[name], *_JSON_TYPES[hints[name]])
                for name in names
            }
        )
