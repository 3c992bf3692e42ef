"""Knowledge distillation: a student's training targets mixed from the labels and a teacher.

The teacher is an exported version, run through its SavedModel signature exactly as the
service runs it (only its probabilities are exported, so softening works on those). Its
outputs are computed once per training image, averaged with the mirror image when asked,
and cached in the run folder, not recomputed on every augmented batch. Measured with
``scripts/distill_cost.py`` on the 2-core CPU (batch 64, 96 px, two runs): one forward
pass of version 6 (three networks) takes 0.43-0.44x a fine-tuning step of the student
(253-269 vs 591-615 ms), so running it online would add over 40% to every epoch (43-46
min over 1 + 25 epochs of FER+), while the cache costs one pass with the mirror images:
3.4-3.7 min for the whole run.
The price: the teacher sees the unaugmented face, not the rotated or erased one.
Validation and test targets stay the labels, so validation loss, early stopping and the
best epoch are measured against the votes, not against the teacher.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig, exported_contract
from trainer.contract import ModelContract
from trainer.errors import TrainerError
from trainer.evaluate import load_exported
from trainer.splits import Split

CACHE = "teacher.npz"


def check_teacher(cfg: TrainConfig, classes: list[str]) -> ModelContract:
    """The teacher's contract, once it is known to predict the data's classes.

    Its folder and input size are checked earlier, by ``TrainConfig.validate``.

    Args:
        cfg: the run's options, with ``teacher`` set.
        classes: the data's classes, in the student's output order.
    """
    teacher = exported_contract(str(cfg.teacher), "--teacher")
    if list(teacher.labels) != list(classes):
        raise TrainerError(
            f"--teacher {cfg.teacher}: its labels {list(teacher.labels)} differ from the "
            f"data's classes {classes}"
        )
    return teacher


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``p ** (1 / T)`` renormalised, which is ``softmax(logits / T)`` when p is a softmax.

    Divided by each row's maximum first, so that a small T cannot underflow every class.
    """
    p = np.asarray(probs, np.float64)
    p = (p / p.max(axis=1, keepdims=True)) ** (1.0 / temperature)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def mix_targets(
    votes: np.ndarray, teacher: np.ndarray, weight: float, temperature: float
) -> np.ndarray:
    """``(1 - weight) * votes + weight * soften(teacher, temperature)``, row by row.

    ``votes`` are the label targets: the vote distribution, or one-hot hard labels.
    """
    mixed = (1.0 - weight) * votes + weight * soften(teacher, temperature)
    return mixed.astype(np.float32)


def distill_targets(cfg: TrainConfig, teacher: ModelContract, run_dir: Path, train: Split) -> dict:
    """Replace ``train``'s targets with the labels-teacher mix; return the metadata block.

    The teacher's outputs come from the run folder's cache when it holds them (a resumed
    run), else from one pass of the teacher, which is then cached.

    Args:
        cfg: the run's options (teacher, weight, temperature, TTA).
        teacher: the teacher's contract (from ``check_teacher``).
        run_dir: the run folder, where ``teacher.npz`` is kept.
        train: the training split; its ``targets`` are replaced.
    """
    probs, seconds = _teacher_outputs(cfg, run_dir, train)
    # Against the label targets' argmax (the vote majority with soft labels), as in training.
    agreement = float((probs.argmax(axis=1) == train.targets.argmax(axis=1)).mean())
    print(
        f"teacher agrees with the training labels' argmax on {agreement:.1%} of "
        f"{len(train)} images; train targets: {1 - cfg.teacher_weight:g} x labels + "
        f"{cfg.teacher_weight:g} x teacher (temperature {cfg.temperature:g})",
        flush=True,
    )
    train.targets = mix_targets(train.targets, probs, cfg.teacher_weight, cfg.temperature)
    return {
        "teacher": {
            "folder": str(cfg.teacher),
            "name": teacher.name,
            "version": teacher.version,
            "metrics": _headline(teacher.metrics),
        },
        "weight": cfg.teacher_weight,
        "temperature": cfg.temperature,
        "teacher_tta": cfg.teacher_tta,
        "targets": "train: (1 - weight) * labels + weight * softened teacher; val, test: labels",
        "teacher_seconds": round(seconds, 1),
        "teacher_train_agreement": round(agreement, 4),
    }


def _headline(metrics: Mapping[str, Any]) -> dict:
    """The teacher's own accuracy and macro F1 per split, from its export metadata."""
    return {
        split: {k: res[k] for k in ("accuracy", "macro_f1")}
        for split, res in metrics.items()
        if "accuracy" in res and "macro_f1" in res
    }


def _teacher_outputs(cfg: TrainConfig, run_dir: Path, train: Split) -> tuple[np.ndarray, float]:
    """The teacher's probabilities for every training image and the seconds they took."""
    cache = run_dir / CACHE
    if cache.is_file():
        probs, seconds = _read_cache(cache, cfg, train.hashes)
        print(f"teacher outputs read from {cache} (computed in {seconds:.1f} s)", flush=True)
        return probs, seconds
    t0 = time.monotonic()
    probs = load_exported(Path(str(cfg.teacher))).predict(train.images, flip_tta=cfg.teacher_tta)
    seconds = time.monotonic() - t0
    mirrored = " and their mirrors" if cfg.teacher_tta else ""
    print(
        f"teacher {cfg.teacher}: {len(train)} training images{mirrored} in {seconds:.1f} s "
        f"({len(train) / max(seconds, 1e-9):.0f} images/s)",
        flush=True,
    )
    _write_cache(cache, probs, train.hashes, cfg, seconds)
    return probs, seconds


def _write_cache(cache: Path, probs: np.ndarray, hashes: list[str], cfg: TrainConfig, s: float):
    # Written whole under another name, then renamed: a run killed while writing leaves
    # no half cache that a resume would trust.
    tmp = cache.with_name(f".{cache.name}.tmp")
    with tmp.open("wb") as f:
        np.savez(
            f,
            probs=probs.astype(np.float32),
            hashes=np.array(hashes),
            teacher=np.array(str(cfg.teacher)),
            teacher_tta=np.array(cfg.teacher_tta),
            seconds=np.array(s),
        )
    os.replace(tmp, cache)


def _read_cache(cache: Path, cfg: TrainConfig, hashes: list[str]) -> tuple[np.ndarray, float]:
    """The cached probabilities, refused unless they are for these images and this teacher."""
    fix = f"delete {cache} to compute them again, or start a new run"
    try:
        with np.load(cache, allow_pickle=False) as f:
            cached = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrainerError(f"{cache} is not a readable teacher cache ({e}); {fix}") from e
    if (str(cached["teacher"]), bool(cached["teacher_tta"])) != (cfg.teacher, cfg.teacher_tta):
        raise TrainerError(
            f"{cache} holds the outputs of teacher {cached['teacher']} (TTA "
            f"{bool(cached['teacher_tta'])}), not of {cfg.teacher} (TTA {cfg.teacher_tta}); {fix}"
        )
    if cached["hashes"].tolist() != list(hashes):
        raise TrainerError(
            f"{cache} holds teacher outputs for other images ({len(cached['hashes'])} cached, "
            f"{len(hashes)} training images now, or not the same ones): the data has changed "
            f"since the run started; {fix}"
        )
    return cached["probs"], float(cached["seconds"])
