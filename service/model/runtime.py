"""Which runtime executes the model: ``FER_RUNTIME=auto|openvino|tensorflow``.

``auto`` keeps the GPU path: TensorFlow where it is installed and sees a GPU; OpenVINO on
the CPU otherwise (several times faster there, and no TensorFlow needed at all); and
TensorFlow on a CPU only when OpenVINO is not installed. The choice is made once per
process, without importing TensorFlow unless a GPU is plausible: importing it costs
seconds and hundreds of MB that a CPU worker would carry for nothing.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from service.config import PRECISIONS, RUNTIMES
from service.model.classifier import VersionClassifier
from service.model.repository import resolve_version

__all__ = ["PRECISIONS", "RUNTIMES", "RuntimeUnavailable", "classifier_factory", "make_classifier"]


class RuntimeUnavailable(RuntimeError):
    """The configured runtime cannot run here (not installed, or a setting it cannot honour)."""


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _nvidia_device_present() -> bool:
    # Cheap evidence of an NVIDIA GPU before paying for a TensorFlow import.
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.isdir("/proc/driver/nvidia/gpus")


def tensorflow_sees_gpu() -> bool:
    if not (installed("tensorflow") and _nvidia_device_present()):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose(runtime: str) -> str:
    """The runtime ``auto`` stands for on this machine, or ``runtime`` itself, checked."""
    if runtime not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "auto":
        if tensorflow_sees_gpu() or not installed("openvino"):
            runtime = "tensorflow"
        else:
            runtime = "openvino"
    if not installed(runtime):
        raise RuntimeUnavailable(
            f"runtime {runtime} is not installed (pip install {runtime}, or set FER_RUNTIME)"
        )
    return runtime


def classifier_factory(
    runtime: str = "auto",
    precision: str = "auto",
    threads: int = 0,
    flip_tta: bool = True,
    cache_dir: Path | None = None,
    calibrate: bool = True,
) -> Callable[[Path], VersionClassifier]:
    """A function from a version folder to an unloaded classifier of the chosen runtime."""
    chosen = choose(runtime)
    if precision not in PRECISIONS:
        raise RuntimeUnavailable(f"unknown precision {precision!r}; choose from auto, bf16, f32")
    if chosen == "tensorflow":
        if precision == "bf16":
            raise RuntimeUnavailable("precision bf16 needs the openvino runtime (FER_RUNTIME)")
        from service.model.tf_runtime import TensorFlowClassifier

        return lambda folder: TensorFlowClassifier(folder, flip_tta, calibrate)
    from service.model.openvino_runtime import OpenVINOClassifier

    return lambda folder: OpenVINOClassifier(
        folder, flip_tta, precision, threads, cache_dir, calibrate
    )


def make_classifier(
    model_dir: Path,
    runtime: str = "auto",
    precision: str = "auto",
    threads: int = 0,
    flip_tta: bool = True,
    cache_dir: Path | None = None,
    calibrate: bool = True,
) -> VersionClassifier:
    """A loaded classifier (benchmarks, tests, scripts) of ``model_dir``, a version folder
    or the highest complete version in it; check ``.ready`` / ``.error``."""
    factory = classifier_factory(runtime, precision, threads, flip_tta, cache_dir, calibrate)
    try:
        folder = resolve_version(Path(model_dir))
    except FileNotFoundError as e:
        # No version to load: say so (a missing folder, or none complete in it) rather
        # than what a load of the bare folder would complain of.
        model = factory(Path(model_dir))
        model.error = f"FileNotFoundError: {e}"
        return model
    model = factory(folder)
    model.load()
    return model
