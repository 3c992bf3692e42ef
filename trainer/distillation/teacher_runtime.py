"""A teacher version on OpenVINO, for ``distill --teacher-mode online``.

Online, the teacher's forward pass is paid on every training batch, and OpenVINO runs an
exported version several times faster than TensorFlow's signature call on this CPU
(scripts/distill_cost.py; figures in ``distill``). It reads the SavedModel folder
itself (``ov.convert_model``), so the teacher is the same artifact the service loads.
The service has its own loader (service/model/openvino_runtime.py) with a conversion cache,
locks and a request per thread; the trainer shares only the model contract with it, and
needs no more than what is here: one model, called from one input-pipeline thread.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainer.contract import ModelContract
from trainer.errors import TrainerError

# OpenVINO's inference threads; 0: its default, one per core. The teacher runs in the input
# pipeline while TensorFlow trains the student on the previous batch, so the two share the
# cores. On 2 cores shared with another run (scripts/distill_cost.py, paired rounds), one
# thread and two both added 21% to an epoch; the default follows a larger machine's cores.
THREADS = 0


class OpenVINOTeacher:
    """An exported version compiled by OpenVINO for the CPU: uint8 batches in, probabilities
    out. One call at a time (one infer request, behind a lock)."""

    runtime = "openvino"

    def __init__(self, compiled: Any, precision: str, seconds: float):
        self.precision, self.seconds = precision, seconds
        # The count OpenVINO uses (asked for 0, it picks one per core).
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def infer(self, images: np.ndarray) -> np.ndarray:
        """The teacher's probabilities for a batch of uint8 images [N, size, size, 3]."""
        with self._lock:
            self._request.infer([np.ascontiguousarray(images)])
            # Copied: the request reuses the output's memory on its next call.
            return np.array(self._request.get_output_tensor(0).data, np.float32)

    def describe(self) -> dict:
        """What the metadata records of the runtime that taught the student."""
        import openvino as ov

        return {
            "name": self.runtime,
            "version": ov.get_version(),
            "precision": self.precision,
            "threads": self.threads,
        }


def load_teacher(
    folder: Path, contract: ModelContract, precision: str = "auto", threads: int = THREADS
) -> OpenVINOTeacher:
    """Convert and compile the exported version in ``folder``, and check one call.

    Args:
        folder: an exported version.
        contract: its contract (already checked against the data's classes).
        precision: ``auto`` (bf16 where the CPU computes it natively, else f32), ``bf16``
            or ``f32``.
        threads: OpenVINO's inference threads (0: one per core).

    Raises:
        TrainerError: OpenVINO cannot convert or run the folder's SavedModel.
    """
    import openvino as ov

    t0 = time.monotonic()
    core = ov.Core()
    if precision == "auto":
        native = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if native else "f32"
    try:
        model = _convert(folder)
        compiled = core.compile_model(model, "CPU", _cpu_config(precision, threads))
    except Exception as e:  # OpenVINO's errors (GeneralFailure, OpConversionFailure...)
        raise TrainerError(
            f"--teacher {folder}: OpenVINO cannot read it for --teacher-mode online "
            f"({_last_line(e)}); use --teacher-mode cached, which runs it through TensorFlow"
        ) from e
    teacher = OpenVINOTeacher(compiled, precision, time.monotonic() - t0)
    _check_output(teacher, folder, contract)
    return teacher


def _cpu_config(precision: str, threads: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": precision,
        # One batch at a time, as fast as it goes: one stream, not several in parallel.
        "PERFORMANCE_HINT": "LATENCY",
        # Pinned, OpenVINO's threads would each hold a core TensorFlow's threads run on too.
        "ENABLE_CPU_PINNING": False,
    }
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _convert(folder: Path) -> Any:
    import openvino as ov

    # Without this, the converter sends usage statistics (a network call per conversion)
    # unless a consent file in $HOME says no: ovc uses a no-op stub when it cannot import
    # openvino_telemetry. Set before the converter is first imported.
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    return ov.convert_model(str(folder))


def _check_output(teacher: OpenVINOTeacher, folder: Path, contract: ModelContract) -> None:
    """One call on two blank images, so that a teacher that runs but answers in another
    shape is refused now, not as a traceback from inside the input pipeline."""
    size, classes = contract.input_size, len(contract.labels)
    try:
        probs = teacher.infer(np.zeros((2, size, size, 3), np.uint8))
    except Exception as e:  # noqa: BLE001 - an input OpenVINO refuses, said as such
        raise TrainerError(f"--teacher {folder}: OpenVINO cannot run it ({_last_line(e)})") from e
    if probs.shape != (2, classes):
        raise TrainerError(
            f"--teacher {folder}: OpenVINO's conversion returns {probs.shape[1:]} values "
            f"per image, not {classes} probabilities"
        )


def _last_line(e: Exception) -> str:
    # OpenVINO's messages open with the C++ check that failed; the cause is the last line.
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__
