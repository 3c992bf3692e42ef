"""The OpenVINO runtime: the same SavedModel folder, converted when a version loads.

OpenVINO reads the trainer's SavedModel directly (``ov.convert_model(folder)``), without
TensorFlow installed, so the model contract stays one artifact. On this project's CPU it
ran a face and its mirror 3-5x faster than TensorFlow's signature call (see README,
"Performance"), in a fraction of the memory. bfloat16 is used where the CPU computes it
natively (AVX512_BF16 or AMX): it did not change accuracy on FER+ PrivateTest.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.model import VersionClassifier

_core: Any = None
_core_lock = threading.Lock()


def core() -> Any:
    """One OpenVINO Core per process (it owns the plugins and their thread pools)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively, so bf16 is a speed-up, not an emulation."""
    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 where the CPU has it natively, else f32; ``bf16``/``f32`` as asked."""
    if precision == "auto":
        return "bf16" if native_bf16() else "f32"
    return precision


class OpenVINOClassifier(VersionClassifier):
    """A SavedModel converted and compiled by OpenVINO for the CPU."""

    runtime = "openvino"
    pad_to_buckets = False  # dynamic batch: no retracing, so no wasted padded faces

    def __init__(
        self, model_dir: Path, flip_tta: bool = True, precision: str = "auto", threads: int = 0
    ):
        super().__init__(model_dir, flip_tta)
        self.device = "CPU"
        self._precision_setting, self.threads = precision, threads
        self._compiled: Any = None
        # An infer request serves one call at a time: one per thread (gthread workers and
        # the batching collector call predict from several threads).
        self._local = threading.local()

    def _open(self, folder: Path, meta: dict) -> None:
        import openvino as ov

        if meta.get("signature", "serving_default") != "serving_default":
            raise ValueError(
                f"signature {meta['signature']!r}: OpenVINO converts only serving_default"
            )
        self.precision = resolve_precision(self._precision_setting)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time per worker thread
        }
        if self.threads > 0:
            config["INFERENCE_NUM_THREADS"] = self.threads
        model = ov.convert_model(str(folder))
        self._compiled = core().compile_model(model, "CPU", config)

    def _call(self, x: np.ndarray) -> np.ndarray:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self._compiled.create_infer_request()
        req.infer([x])
        # Copy: the output tensor's memory is reused by this request's next call.
        return np.array(req.get_output_tensor(0).data, np.float32)
