"""Per-epoch checkpoints that survive SIGKILL: weights, optimizer state and run state.

A checkpoint is a folder written in full under a temporary name and then renamed into
place, so an interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np

from trainer.candidate import is_candidate, read_candidate
from trainer.contract import ModelContract
from trainer.errors import TrainerError

CKPT = "checkpoint"


def save(run_dir: Path, model: keras.Model, state: dict) -> None:
    """Write weights, optimizer variables and ``state`` as the run's latest checkpoint."""
    tmp = run_dir / f".{CKPT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_weights(tmp / "model.weights.h5")
    store: dict = {}
    model.optimizer.save_own_variables(store)
    np.savez(tmp / "optimizer.npz", **store)
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    final, old = run_dir / CKPT, run_dir / f".{CKPT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _latest(run_dir: Path) -> Path | None:
    for name in (CKPT, f".{CKPT}.old"):  # .old survives a kill between the two renames
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def load_state(run_dir: Path) -> dict | None:
    ckpt = _latest(run_dir)
    return json.loads((ckpt / "state.json").read_text()) if ckpt else None


def restore(run_dir: Path, model: keras.Model, with_optimizer: bool = True) -> None:
    """Load the latest checkpoint's weights (and optimizer state) into a compiled model."""
    ckpt = _latest(run_dir)
    if ckpt is None:
        return
    _load_weights(model, ckpt / "model.weights.h5")
    if not with_optimizer:
        return
    with np.load(ckpt / "optimizer.npz") as f:
        store = {k: f[k] for k in f.files}
    if store:
        model.optimizer.build(model.trainable_variables)
        model.optimizer.load_own_variables(store)


def _load_weights(model: keras.Model, path: Path) -> None:
    # Weights files also hold the optimizer of the time; ours is restored separately.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def load_best(run_dir: Path, model: keras.Model) -> bool:
    path = run_dir / "best.weights.h5"
    if path.exists():
        _load_weights(model, path)
    return path.exists()


def save_best(run_dir: Path, model: keras.Model) -> None:
    tmp = run_dir / ".best.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, run_dir / "best.weights.h5")


def init_from_export(model: keras.Model, model_dir: Path, classes: list[str]) -> int:
    """Load an exported version's (or a candidate's) weights into ``model``; return how
    many were set.

    The SavedModel keeps each Keras variable under its layer path, so the weights match by
    name; anything that does not line up (other labels, input size or width) is an error
    rather than a silent partial load.
    """
    import tensorflow as tf  # heavy; only this path needs the SavedModel loader

    labels = list(ModelContract.read(model_dir).labels)
    if labels != list(classes):
        raise TrainerError(
            f"--init-from {model_dir}: its labels {labels} differ from the data's {classes}"
        )
    if is_candidate(model_dir):  # models/candidates/<name>: float16 weights, no SavedModel
        saved = read_candidate(model_dir)
    else:
        loaded = tf.saved_model.load(str(model_dir)).variables
        saved = {v.name.removesuffix(":0"): v.numpy() for v in loaded}
    missing = [w.path for w in model.weights if w.path not in saved]
    wrong = [
        w.path
        for w in model.weights
        if w.path in saved and tuple(saved[w.path].shape) != tuple(w.shape)
    ]
    if missing or wrong:
        raise TrainerError(
            f"--init-from {model_dir}: not the same network ({len(missing)} weight(s) missing, "
            f"{len(wrong)} of another shape, e.g. {(missing + wrong)[0]})"
        )
    for w in model.weights:
        w.assign(saved[w.path])
    return len(model.weights)
