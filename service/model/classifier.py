"""The classifier protocol, and what every runtime's classifier of one version shares.

A classifier is built for one version folder (the registry chose it: service.model.registry)
and loads exactly that folder: its contract (service.model.contract: input size, colour
handling, crop rule and class order, never from code) and its SavedModel. How the
SavedModel is executed (TensorFlow, OpenVINO) is a runtime's business: see
service.model.runtime.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from service.model.calibration import temper
from service.model.contract import Calibration, Contract

log = logging.getLogger("service.model")
# Batch sizes traced or compiled at warm-up; larger batches are cut into chunks of the last.
BUCKETS = (1, 2, 4, 8, 16, 32)


class Classifier(Protocol):
    """What the service needs from a model version; tests pass fakes with the same attributes."""

    folder: Path  # the version folder it was built for
    ready: bool
    warm: bool
    error: str | None
    runtime: str  # tensorflow, openvino (or what a fake calls itself)
    precision: str  # f32 or bf16: what the runtime computes in
    device: str  # CPU or GPU

    @property
    def calibration(self) -> Calibration | None:
        """The calibration ``predict`` applies (None: its probabilities are the network's)."""
        ...

    @property
    def contract(self) -> Contract:
        """The version's metadata and labels, typed (once loaded)."""
        ...

    # The contract's most used fields, for short.
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def labels(self) -> list[str]: ...

    @property
    def input_size(self) -> int: ...

    def load(self) -> None: ...

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """[N, S, S, 3] uint8 faces to [N, len(labels)] probabilities (calibrated, where
        ``calibration`` says so)."""
        ...


class VersionClassifier:
    """One model version run by some runtime: loading, warm-up, flip TTA, chunking and
    calibration (the version's temperature, applied to the flip-TTA mean as it was fitted;
    ``calibrate=False`` serves the network's probabilities, FER_CALIBRATION).

    A runtime subclass implements ``_open`` (make ``self.folder``'s SavedModel callable)
    and ``_call`` (one batch of uint8 faces to probabilities) and says whether batches
    must be padded to ``BUCKETS`` (TensorFlow retraces its graph for every new batch size).
    """

    runtime = "none"
    pad_to_buckets = False

    def __init__(self, folder: Path, flip_tta: bool = True, calibrate: bool = True):
        self.folder = Path(folder)
        self.flip_tta, self.calibrate = flip_tta, calibrate
        self._contract: Contract | None = None
        self.ready, self.warm = False, False
        self.error: str | None = None
        self.device, self.precision = "unknown", "unknown"

    @property
    def contract(self) -> Contract:
        if self._contract is None:
            raise RuntimeError(f"the model in {self.folder} is not loaded")
        return self._contract

    @property
    def calibration(self) -> Calibration | None:
        return self.contract.calibration if self.calibrate else None

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def version(self) -> str:
        return self.contract.version

    @property
    def labels(self) -> list[str]:
        return list(self.contract.labels)

    @property
    def input_size(self) -> int:
        return self.contract.input_size

    def load(self) -> None:
        """Load and warm up; on failure keep ``ready`` False and record the error."""
        t0 = time.monotonic()
        try:
            self._load()
        except Exception as e:  # noqa: BLE001 - any load failure means "not ready", logged
            self.error = f"{type(e).__name__}: {e}"
            log.error(
                "model load failed",
                extra={"folder": str(self.folder), "runtime": self.runtime, "error": self.error},
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
        self._contract = Contract.read(self.folder)
        self._open()
        self._warm_up()  # every batch shape before the first request
        self.ready = True

    def _open(self) -> None:
        raise NotImplementedError

    def _call(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _warm_up(self) -> None:
        zeros = np.zeros((1, self.input_size, self.input_size, 3), np.uint8)
        for n in self._call_sizes():
            self._call(np.repeat(zeros, n, axis=0))
        self.warm = True

    def _call_sizes(self) -> list[int]:
        """Every batch ``_call`` can be given: the buckets where calls are padded to them,
        else every size up to the largest chunk (even ones under flip TTA: faces and their
        mirrors). A network with a dynamic batch (OpenVINO's) prepares each size the first
        time it meets it, 15 ms on a batch of 6 that then takes 6 (version 15, bf16): that
        happens here, about 0.6 s once per load, not on a photo of three faces."""
        if self.pad_to_buckets:
            return list(BUCKETS)
        step = 2 if self.flip_tta else 1
        return list(range(step, BUCKETS[-1] + 1, step))

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
        if (cal := self.calibration) is not None:
            probs = temper(probs, cal.temperature)
        return probs


def _pad(x: np.ndarray) -> np.ndarray:
    size = next(b for b in BUCKETS if b >= len(x))
    if size == len(x):
        return np.ascontiguousarray(x)
    pad = np.zeros((size - len(x), *x.shape[1:]), x.dtype)
    return np.concatenate([x, pad])
