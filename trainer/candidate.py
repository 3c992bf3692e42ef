"""A candidate: a trained version that a later session will go on training, kept small.

A session ends at 180 minutes and only git carries over, so a chain of training runs that
does not fit one session needs its intermediate network in git. A whole exported version
is 14-53 MB and served by nothing; a candidate is its weights alone in float16 (about
7 MB for MobileNetV2 at alpha 1.0), keyed by Keras weight path, with the version's
contract files (metadata, labels, model card) beside them, in ``models/candidates/<name>/``
(the service reads only ``models/<name>/<digits>/``; .dockerignore keeps candidates out of
the images). ``python -m trainer train|distill --init-from models/candidates/<name>``
starts from it as from an exported version. One candidate at a time, deleted when it ships
or is dropped.

float16 keeps 11 significant bits: every weight comes back within 0.05% of itself; on the
version it was measured on, the reloaded network's probabilities moved by at most the
amount the tests allow (tests/trainer/test_candidate.py), far below what the next run's
first step changes.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np

from trainer.contract import ModelContract
from trainer.errors import TrainerError

WEIGHTS = "weights.float16.npz"
COPIED = ("metadata.json", "labels.json", "MODEL_CARD.md")


def is_candidate(folder: Path) -> bool:
    return (Path(folder) / WEIGHTS).is_file()


def save_candidate(version: Path, out: Path) -> Path:
    """Write ``version``'s weights (float16) and contract files into ``out``.

    Raises:
        TrainerError: ``version`` is not an exported version of one network, or ``out``
            holds something already.
    """
    import tensorflow as tf

    contract = ModelContract.read(version)
    if "ensemble" in contract.details or "adjustment" in contract.details:
        raise TrainerError(
            f"{version} is an ensemble or prior-adjusted: keep the trained network it was "
            f"made from as the candidate"
        )
    if out.exists() and any(out.iterdir()):
        raise TrainerError(f"{out} is not empty: delete the candidate there first")
    variables = tf.saved_model.load(str(version)).variables
    weights = {v.name.removesuffix(":0"): _small(v.numpy()) for v in variables}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS}.tmp"
    with tmp.open("wb") as f:
        np.savez_compressed(f, **weights)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    tmp.replace(out / WEIGHTS)
    for name in COPIED:
        if (version / name).is_file():
            shutil.copyfile(version / name, out / name)
    return out


def _small(w: np.ndarray) -> np.ndarray:
    # Floats in float16; the rest (the seed generators' int states) as they are.
    return w.astype(np.float16) if np.issubdtype(w.dtype, np.floating) else w


def read_candidate(folder: Path) -> dict[str, np.ndarray]:
    """The candidate's weights by Keras weight path, floats as float32."""
    try:
        with np.load(Path(folder) / WEIGHTS, allow_pickle=False) as f:
            return {
                k: f[k].astype(np.float32) if f[k].dtype == np.float16 else f[k] for k in f.files
            }
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrainerError(f"{folder}/{WEIGHTS} is not readable ({e})") from e
