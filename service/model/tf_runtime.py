"""The TensorFlow runtime: the SavedModel's serving signature, on the GPU when present.

Imported only when this runtime is chosen: the CPU service runs without TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from service.model.classifier import VersionClassifier

log = logging.getLogger("service.model")


class TensorFlowClassifier(VersionClassifier):
    """A SavedModel called through its serving signature (GPU when present)."""

    runtime = "tensorflow"
    pad_to_buckets = True  # each new batch size would retrace the graph

    def __init__(self, folder: Path, flip_tta: bool = True, calibrate: bool = True):
        super().__init__(folder, flip_tta, calibrate)
        self.precision = "f32"
        self._fn: Any = None

    def _open(self) -> None:
        import tensorflow as tf

        _gpu_memory_growth()
        self.device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        module = tf.saved_model.load(str(self.folder))
        # A signature holds only weak references to its variables: keep the module alive.
        self._module = module
        self._fn = module.signatures[self.contract.signature]

    def _call(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        out = self._fn(tf.constant(x))
        return next(iter(out.values())).numpy()


_growth_set = False


def _gpu_memory_growth() -> None:
    """Several workers share one GPU: take memory as needed, not all of it up front.

    Allowed only before TensorFlow initialises the GPU, so only for the first model a
    process loads (a reloaded version would otherwise fail on RuntimeError).
    """
    global _growth_set
    if _growth_set:
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by someone else: keep its setting
            log.warning("GPU memory growth could not be set: GPU already initialised")
    _growth_set = True
