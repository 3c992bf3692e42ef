"""Write the model contract: ``models/<name>/<version>/`` with SavedModel, labels, metadata.

The folder is assembled under a hidden temporary name and renamed when complete, so the
service (which only looks at numbered folders) never sees half a model.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from trainer.errors import TrainerError
from trainer.evaluate import SIGNATURE, load_exported
from trainer.images import COLOR_MODE

# What the service must do to a face before calling the signature; it reads this, not code.
PREPROCESSING = {
    "decode": "Pillow, EXIF orientation applied, first frame",
    "color": COLOR_MODE,  # convert to 8-bit luma (Pillow "L"), repeat to 3 channels
    "resize_shrink": "INTER_AREA",  # OpenCV interpolation when the crop is larger
    "resize_enlarge": "INTER_LINEAR",  # ... and when it is smaller than the input
    "scaling": "inside the model (x / 127.5 - 1)",
    "dtype": "uint8",
}
# The dataset's faces are tight, roughly aligned square crops; a detector box is made
# square and scaled by this factor so service crops look like training images. Measured:
# YuNet on 775 FER2013 PrivateTest faces (upscaled to 160 px, padded to 400) gives boxes
# whose long side is the crop's side times 0.99 (median; quartiles 0.91-1.08), centred
# within 1.3% of it, so the box itself, squared, is the training framing.
FACE_CROP = {"square": True, "scale": 1.0}


class Exportable(Protocol):
    """What export needs: a Keras model, or trainer.ensemble.Ensemble."""

    def export(self, filepath: str, format: str = ..., verbose: bool = ...) -> Any: ...

    def __call__(self, x: Any, training: bool = ...) -> Any: ...


def next_version(models_dir: Path, name: str) -> int:
    folder = models_dir / name
    versions = (
        [int(p.name) for p in folder.glob("*") if p.name.isdigit()] if folder.exists() else []
    )
    return max(versions, default=0) + 1


def code_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def base_metadata(name: str, version: int, labels: list[str], size: int) -> dict:
    return {
        "name": name,
        "version": version,
        "format": "tf_saved_model",
        "signature": SIGNATURE,
        "input": {"shape": [None, size, size, 3], "dtype": "uint8", "range": [0, 255]},
        "output": "probabilities, one per label, in labels order",
        "labels": labels,
        "preprocessing": PREPROCESSING,
        "face_crop": FACE_CROP,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "code_revision": code_revision(),
    }


def write_saved_model(model: Exportable, tmp: Path, sample: np.ndarray) -> float:
    """Export, reload and compare with the in-memory model; return the largest difference."""
    model.export(str(tmp), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp))
    got = next(iter(reloaded.signatures[SIGNATURE](tf.constant(sample)).values())).numpy()
    want = model(sample, training=False)
    diff = float(np.max(np.abs(got - np.asarray(want))))
    if diff > 1e-4:
        raise TrainerError(f"exported model disagrees with the trained one (max diff {diff})")
    return diff


def export(
    model: Exportable, models_dir: Path, metadata: dict, sample: np.ndarray, finish=None
) -> Path:
    """Write the versioned model folder atomically.

    Args:
        model: the trained Keras model or an Ensemble (uint8 images in, probabilities out).
        models_dir: the root holding ``<name>/<version>/``.
        metadata: contract fields (``base_metadata`` plus training details).
        sample: a few uint8 images to check the reloaded export against ``model``.
        finish: optional callback(Exported, tmp_dir) run on the reloaded export before the
            rename; it may add metrics to ``metadata`` and write reports into the folder.
    """
    final = models_dir / metadata["name"] / str(metadata["version"])
    if final.exists():
        raise TrainerError(f"{final} already exists; model versions are never overwritten")
    tmp = final.parent / f".tmp-{metadata['version']}-{int(time.time())}"
    tmp.mkdir(parents=True)
    try:
        metadata["export_check_max_diff"] = write_saved_model(model, tmp, sample)
        _write_contract(tmp, metadata)
        if finish is not None:
            finish(load_exported(tmp), tmp)
            _write_contract(tmp, metadata)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_contract(folder: Path, metadata: dict) -> None:
    (folder / "labels.json").write_text(json.dumps(metadata["labels"], indent=2) + "\n")
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
