"""Knowledge distillation: a student's training targets mixed from the labels and a teacher.

The teacher is an exported version (only its probabilities are exported, so softening
works on those), run in one of two modes (``--teacher-mode``):

* ``cached`` (the default): through its SavedModel signature, as the service's TensorFlow
  runtime runs it, once per training image (averaged with the mirror image when asked),
  and cached in the run folder, which a resumed run reads. The price: the teacher sees
  the clean face, the student the rotated, erased or blurred one it is trained on.
* ``online``: through OpenVINO (trainer/teacher_runtime.py) on every augmented training
  batch, on exactly the images the student is fed (and their mirrors), so that target and
  image agree, as in "Knowledge distillation: a good teacher is patient and consistent"
  (Beyer et al., 2022). Nothing is cached: a resumed run converts the teacher again.
  ``--teacher-view framed`` shows it the batch as framed (flip, geometry) but before
  the appearance changes and erasing: the crop still agrees, but the target is the
  teacher's answer on the clean face. Taught on the degraded image itself, version 11
  copied the teacher's failures on blurred and noisy faces (README, robustness); taught
  on the clean unaugmented one (cached), versions 7-9 were robust but less accurate.

Measured with ``scripts/distill_cost.py`` on the 2-core CPU while another training run
shared it (batch 64, 96 px, version 6 = three networks; three runs; ratios to one
fine-tuning step of the student, as absolute times were inflated by the load): the teacher
through TensorFlow 0.48x, 0.92-0.95x with the mirror, so online it would nearly double
every epoch; through OpenVINO (bf16) 0.09x, 0.17-0.18x with the mirror, 5.2-5.6x faster.
In the real input pipeline and ``fit``, the online OpenVINO teacher with its mirror added
21% to an epoch (paired rounds), where the cache costs one TensorFlow pass for the whole
run (about 0.9x an epoch of student steps).
Validation and test targets stay the labels, so validation loss, early stopping and the
best epoch are measured against the votes, not against the teacher.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig, exported_contract
from trainer.contract import ModelContract
from trainer.errors import TrainerError
from trainer.evaluate import load_exported
from trainer.input_pipeline import BatchTargets
from trainer.splits import Split
from trainer.teacher_runtime import OpenVINOTeacher, load_teacher

CACHE = "teacher.npz"
# What an online teacher is shown (--teacher-view), as the metadata and the card say it.
VIEWS = {
    "augmented": "augmented training batch{mirror}",
    "framed": "training batch{mirror} as framed (the augmentation's flip, rotation, shift, "
    "shear and zoom), before the appearance changes and erasing the student got",
}


@dataclass
class Teacher:
    """A teacher checked against the data: its contract and, online, its OpenVINO model."""

    contract: ModelContract
    runtime: OpenVINOTeacher | None = None


@dataclass
class Distillation:
    """What distillation changes in a run once the teacher is ready."""

    details: dict  # the metadata's "distillation" block
    # Online, each augmented batch's train targets (from the batch as the student gets it
    # or as framed); cached, None: the train split's targets are mixed already.
    batch_targets: BatchTargets | None = None


def open_teacher(cfg: TrainConfig, classes: list[str]) -> Teacher:
    """The run's teacher, checked; online, converted and compiled by OpenVINO too.

    Called before the run folder is made, so that a teacher OpenVINO cannot read starts
    no run.

    Args:
        cfg: the run's options, with ``teacher`` set.
        classes: the data's classes, in the student's output order.
    """
    contract = check_teacher(cfg, classes)
    if cfg.teacher_mode != "online":
        return Teacher(contract)
    runtime = load_teacher(Path(str(cfg.teacher)), contract)
    threads = f"{runtime.threads} thread{'s' * (runtime.threads > 1)}"
    print(
        f"teacher {cfg.teacher} on OpenVINO ({runtime.precision}, {threads}), run on every "
        f"{VIEWS[cfg.teacher_view].format(mirror=' and its mirror' * cfg.teacher_tta)}; "
        f"converted and compiled in {runtime.seconds:.1f} s",
        flush=True,
    )
    return Teacher(contract, runtime)


def distill(cfg: TrainConfig, teacher: Teacher, run_dir: Path, train: Split) -> Distillation:
    """Make the train targets the labels-teacher mix: cached, now, in ``train``; online,
    batch by batch (``Distillation.batch_targets``, for the input pipeline)."""
    if teacher.runtime is None:
        return Distillation(distill_targets(cfg, teacher.contract, run_dir, train))
    details = {
        **_settings(cfg, teacher.contract),
        "targets": "train: (1 - weight) * labels + weight * softened teacher, the teacher run "
        f"on each {VIEWS[cfg.teacher_view].format(mirror='')}; val, test: labels",
        "teacher_runtime": teacher.runtime.describe(),
    }
    return Distillation(details, online_targets(teacher.runtime.infer, cfg))


def online_targets(infer: Callable[[np.ndarray], np.ndarray], cfg: TrainConfig) -> BatchTargets:
    """The train targets of one batch from the teacher (``infer``) on its very images.

    Args:
        infer: the teacher: uint8 images [N, size, size, 3] in, probabilities out.
        cfg: the run's options (weight, temperature, TTA).
    """

    def targets(images: np.ndarray, votes: np.ndarray) -> np.ndarray:
        probs = infer(images)
        if cfg.teacher_tta:
            probs = (probs + infer(images[:, :, ::-1])) / 2.0
        return mix_targets(votes, probs, cfg.teacher_weight, cfg.temperature)

    return targets


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
        **_settings(cfg, teacher),
        "targets": "train: (1 - weight) * labels + weight * softened teacher; val, test: labels",
        "teacher_seconds": round(seconds, 1),
        "teacher_train_agreement": round(agreement, 4),
    }


def _settings(cfg: TrainConfig, teacher: ModelContract) -> dict:
    """The metadata both modes record: the teacher, the mode and the mix."""
    return {
        "teacher": {
            "folder": str(cfg.teacher),
            "name": teacher.name,
            "version": teacher.version,
            "metrics": _headline(teacher.metrics),
        },
        "mode": cfg.teacher_mode,
        **({"view": cfg.teacher_view} if cfg.teacher_mode == "online" else {}),
        "weight": cfg.teacher_weight,
        "temperature": cfg.temperature,
        "teacher_tta": cfg.teacher_tta,
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
