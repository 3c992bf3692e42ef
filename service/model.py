"""The classifier protocol, model-version resolution, and what every runtime shares.

The model folder follows the trainer's contract (``models/<name>/<version>/``:
SavedModel, ``labels.json``, ``metadata.json``). The service reads input size, colour
handling, crop rule and class order from the metadata, never from code. How the
SavedModel is executed (TensorFlow, OpenVINO) is a runtime's business: see
service.runtime.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger("service.model")
# Batch sizes traced or compiled at warm-up; larger batches are cut into chunks of the last.
BUCKETS = (1, 2, 4, 8, 16, 32)


class Classifier(Protocol):
    """What the service needs from a model; tests pass fakes with the same attributes."""

    name: str
    version: str
    labels: list[str]
    input_size: int
    metadata: dict
    ready: bool
    warm: bool
    error: str | None
    runtime: str  # tensorflow, openvino (or what a fake calls itself)
    precision: str  # f32 or bf16: what the runtime computes in
    device: str  # CPU or GPU

    def load(self) -> None: ...

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """[N, S, S, 3] uint8 faces to [N, len(labels)] probabilities."""
        ...


def is_complete(version_dir: Path) -> bool:
    return all(
        (version_dir / f).is_file() for f in ("saved_model.pb", "metadata.json", "labels.json")
    )


def resolve_version(model_dir: Path) -> Path:
    """``model_dir`` itself if it is a version folder, else its highest complete version."""
    if is_complete(model_dir):
        return model_dir
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    versions = sorted(
        (p for p in model_dir.iterdir() if p.name.isdigit() and is_complete(p)),
        key=lambda p: int(p.name),
    )
    if not versions:
        raise FileNotFoundError(f"no complete model version in {model_dir}")
    return versions[-1]


class VersionClassifier:
    """One model version run by some runtime: loading, warm-up, flip TTA and chunking.

    A runtime subclass implements ``_open`` (make the version callable) and ``_call``
    (one batch of uint8 faces to probabilities) and says whether batches must be padded
    to ``BUCKETS`` (TensorFlow retraces its graph for every new batch size).
    """

    runtime = "none"
    pad_to_buckets = False

    def __init__(self, model_dir: Path, flip_tta: bool = True):
        self.model_dir = Path(model_dir)
        self.folder: Path | None = None  # the version folder, once resolved
        self.flip_tta = flip_tta
        self.name, self.version = "", ""
        self.labels: list[str] = []
        self.input_size = 0
        self.metadata: dict = {}
        self.ready, self.warm = False, False
        self.error: str | None = None
        self.device, self.precision = "unknown", "unknown"

    def load(self) -> None:
        """Load and warm up; on failure keep ``ready`` False and record the error."""
        t0 = time.monotonic()
        try:
            self._load()
        except Exception as e:  # noqa: BLE001 - any load failure means "not ready", logged
            self.error = f"{type(e).__name__}: {e}"
            log.error(
                "model load failed",
                extra={
                    "model_dir": str(self.model_dir),
                    "runtime": self.runtime,
                    "error": self.error,
                },
            )
            return
        log.info(
            "model ready",
            extra={
                "model": self.name,
                "version": self.version,
                "runtime": self.runtime,
                "precision": self.precision,
                "device": self.device,
                "load_seconds": round(time.monotonic() - t0, 2),
            },
        )

    def _load(self) -> None:
        folder = self.folder = resolve_version(self.model_dir)
        meta = json.loads((folder / "metadata.json").read_text())
        labels = json.loads((folder / "labels.json").read_text())
        self.metadata, self.labels = meta, list(labels)
        self.name, self.version = str(meta["name"]), str(meta["version"])
        self.input_size = int(meta["input"]["shape"][1])
        self._open(folder, meta)
        self._warm_up()  # every batch shape before the first request
        self.ready = True

    def _open(self, folder: Path, meta: dict) -> None:
        raise NotImplementedError

    def _call(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _warm_up(self) -> None:
        zeros = np.zeros((1, self.input_size, self.input_size, 3), np.uint8)
        for n in BUCKETS:
            self._call(np.repeat(zeros, n, axis=0))
        self.warm = True

    def predict(self, faces: np.ndarray) -> np.ndarray:
        n = len(faces)
        if n == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        x = np.concatenate([faces, faces[:, :, ::-1]]) if self.flip_tta else faces
        step = BUCKETS[-1]
        chunks = [x[i : i + step] for i in range(0, len(x), step)]
        if self.pad_to_buckets:
            probs = np.concatenate([self._call(_pad(c))[: len(c)] for c in chunks])
        else:
            probs = np.concatenate([self._call(np.ascontiguousarray(c)) for c in chunks])
        if self.flip_tta:
            probs = (probs[:n] + probs[n:]) / 2.0
        return probs


def _pad(x: np.ndarray) -> np.ndarray:
    size = next(b for b in BUCKETS if b >= len(x))
    if size == len(x):
        return np.ascontiguousarray(x)
    pad = np.zeros((size - len(x), *x.shape[1:]), x.dtype)
    return np.concatenate([x, pad])
