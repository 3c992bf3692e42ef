"""Knowledge distillation: a student's training targets mixed from the labels and teachers.

``--teacher`` may be given several times, each with its ``--teacher-weight``: the train
target is ``(1 - sum of weights) x labels + sum of weight x softened teacher``. A teacher
is an ONNX expression model run on aligned faces (``face_teacher``: always cached, by image,
in ``--teacher-cache``; #32 adds OpenCV Zoo's RAF-DB model, which knows posed
faces of other people that FER2013 never showed ours) or an exported version (only its
probabilities are exported, so softening works on those), run in one of two modes
(``--teacher-mode``):

* ``cached`` (the default): through its SavedModel signature, as the service's TensorFlow
  runtime runs it, once per training image (averaged with the mirror image when asked),
  and cached in the run folder, which a resumed run reads. The price: the teacher sees
  the clean face, the student the rotated, erased or blurred one it is trained on.
* ``online``: through OpenVINO (trainer/distillation/teacher_runtime.py) on every augmented training
  batch, on exactly the images the student is fed (and their mirrors), so that target and
  image agree, as in "Knowledge distillation: a good teacher is patient and consistent"
  (Beyer et al., 2022). Nothing is cached: a resumed run converts the teacher again.
  ``--teacher-view framed`` shows it the batch as framed (flip, geometry) but before
  the appearance changes and erasing: the crop still agrees, but the target is the
  teacher's answer on the clean face. Taught on the degraded image itself, version 11
  copied the teacher's failures on blurred and noisy faces (docs/model.md); taught
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig, exported_contract
from trainer.contract import ModelContract
from trainer.data.input_pipeline import BatchTargets
from trainer.data.splits import Prepared, Split
from trainer.distillation.face_teacher import (
    CachedFaceTeacher,
    file_digest,
    is_onnx_teacher,
    yunet_for,
)
from trainer.distillation.teacher_runtime import OpenVINOTeacher, load_teacher
from trainer.errors import TrainerError
from trainer.evaluate import load_exported

CACHE = "teacher.npz"
# What an online teacher is shown (--teacher-view), as the metadata and the card say it.
VIEWS = {
    "augmented": "augmented training batch{mirror}",
    "framed": "training batch{mirror} as framed (the augmentation's flip, rotation, shift, "
    "shear and zoom), before the appearance changes and erasing the student got",
}


@dataclass
class Teacher:
    """One teacher, checked against the data, with its share of the train target."""

    path: str
    weight: float
    contract: ModelContract | None = None  # an exported version; None: an ONNX model
    runtime: OpenVINOTeacher | None = None  # an exported version run online


@dataclass
class Distillation:
    """What distillation changes in a run once the teachers are ready."""

    details: dict  # the metadata's "distillation" block
    # With an online teacher, each augmented batch's train targets (from the batch as the
    # student gets it or as framed); else None: the train split's targets are mixed already.
    batch_targets: BatchTargets | None = None


def open_teachers(cfg: TrainConfig, classes: list[str]) -> list[Teacher]:
    """The run's teachers, checked; an exported version run online is converted and
    compiled by OpenVINO too.

    Called before the run folder is made, so that a teacher that cannot be read starts
    no run. An ONNX teacher is always cached (trainer/distillation/face_teacher.py): its faces are
    aligned on the clean image, which an augmented batch no longer is.

    Args:
        cfg: the run's options, with ``teacher`` set.
        classes: the data's classes, in the student's output order.
    """
    teachers = []
    for path, weight in cfg.teachers():
        if is_onnx_teacher(path):
            teachers.append(Teacher(path, weight))
            continue
        contract = check_teacher(path, classes)
        if cfg.teacher_mode != "online":
            teachers.append(Teacher(path, weight, contract))
            continue
        runtime = load_teacher(Path(path), contract)
        threads = f"{runtime.threads} thread{'s' * (runtime.threads > 1)}"
        print(
            f"teacher {path} on OpenVINO ({runtime.precision}, {threads}), run on every "
            f"{VIEWS[cfg.teacher_view].format(mirror=' and its mirror' * cfg.teacher_tta)}; "
            f"converted and compiled in {runtime.seconds:.1f} s",
            flush=True,
        )
        teachers.append(Teacher(path, weight, contract, runtime))
    return teachers


def distill(
    cfg: TrainConfig, teachers: list[Teacher], run_dir: Path, prep: Prepared
) -> Distillation:
    """Make the train targets the labels-teachers mix: the cached teachers' part now, in
    the train split; an online teacher's batch by batch (``Distillation.batch_targets``,
    for the input pipeline).

    The target is ``(1 - sum of weights) x labels + sum of weight x softened teacher``.
    With online teachers, the split's targets hold the rest of the mix scaled to sum to
    1, which the online step mixes in as its "labels".
    """
    train = prep.splits["train"]
    label_weight = 1.0 - sum(t.weight for t in teachers)
    mixed = label_weight * train.targets
    blocks = []
    for k, t in enumerate(teachers):
        if t.runtime is not None:
            blocks.append(_online_block(cfg, t))
            continue
        probs, block = _cached_outputs(cfg, t, k, run_dir, prep)
        block["train_agreement"] = _agreement(t.path, probs, train.targets)
        mixed = mixed + t.weight * soften(probs, cfg.temperature)
        blocks.append(block)
    online = [t for t in teachers if t.runtime is not None]
    rest = 1.0 - sum(t.weight for t in online)
    if rest > 0:
        train.targets = (mixed / rest).astype(np.float32)
    parts = " + ".join(f"{t.weight:g} x {Path(t.path).name}" for t in teachers)
    print(
        f"train targets: {label_weight:g} x labels + {parts} (softened at temperature "
        f"{cfg.temperature:g}{', each averaged with its mirror' * cfg.teacher_tta})",
        flush=True,
    )
    details = {
        "teachers": blocks,
        "label_weight": round(label_weight, 6),
        "temperature": cfg.temperature,
        "teacher_tta": cfg.teacher_tta,
        "targets": "train: (1 - sum of weights) * labels + sum of weight * softened teacher; "
        "val, test: labels",
    }
    if not online:
        return Distillation(details)
    runs = [(t.runtime.infer, t.weight) for t in online if t.runtime is not None]
    return Distillation(details, online_targets(runs, cfg))


def online_targets(
    teachers: Sequence[tuple[Callable[[np.ndarray], np.ndarray], float]], cfg: TrainConfig
) -> BatchTargets:
    """The train targets of one batch from the online teachers on its very images.

    Args:
        teachers: (infer, weight) per online teacher; infer takes uint8 images [N, size,
            size, 3] and gives probabilities.
        cfg: the run's options (temperature, TTA).
    """

    def targets(images: np.ndarray, votes: np.ndarray) -> np.ndarray:
        out = (1.0 - sum(w for _, w in teachers)) * votes
        for infer, weight in teachers:
            probs = infer(images)
            if cfg.teacher_tta:
                probs = (probs + infer(images[:, :, ::-1])) / 2.0
            out = out + weight * soften(probs, cfg.temperature)
        return out.astype(np.float32)

    return targets


def check_teacher(path: str, classes: list[str]) -> ModelContract:
    """An exported teacher's contract, once it is known to predict the data's classes.

    Its folder and input size are checked earlier, by ``TrainConfig.validate``.
    """
    teacher = exported_contract(path, "--teacher")
    if list(teacher.labels) != list(classes):
        raise TrainerError(
            f"--teacher {path}: its labels {list(teacher.labels)} differ from the "
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


def _agreement(path: str, probs: np.ndarray, targets: np.ndarray) -> float:
    # Against the label targets' argmax (the vote majority with soft labels), as in training.
    agreement = float((probs.argmax(axis=1) == targets.argmax(axis=1)).mean())
    print(
        f"teacher {path} agrees with the training labels' argmax on {agreement:.1%} of "
        f"{len(targets)} images",
        flush=True,
    )
    return round(agreement, 4)


def _online_block(cfg: TrainConfig, t: Teacher) -> dict:
    assert t.contract is not None and t.runtime is not None
    return {
        **_exported(t.path, t.contract),
        "weight": t.weight,
        "mode": "online",
        "view": cfg.teacher_view,
        "runtime": t.runtime.describe(),
    }


def _exported(path: str, contract: ModelContract) -> dict:
    return {
        "folder": path,
        "name": contract.name,
        "version": contract.version,
        "metrics": _headline(contract.metrics),
    }


def _headline(metrics: Mapping[str, Any]) -> dict:
    """The teacher's own accuracy and macro F1 per split, from its export metadata."""
    return {
        split: {k: res[k] for k in ("accuracy", "macro_f1")}
        for split, res in metrics.items()
        if "accuracy" in res and "macro_f1" in res
    }


def _cached_outputs(
    cfg: TrainConfig, t: Teacher, k: int, run_dir: Path, prep: Prepared
) -> tuple[np.ndarray, dict]:
    """A cached teacher's probabilities for the train split and its metadata block."""
    train = prep.splits["train"]
    if t.contract is not None:
        probs, seconds = _version_outputs(cfg, t.path, run_dir / _cache_name(k), train)
        block = {**_exported(t.path, t.contract), "seconds": round(seconds, 1)}
        return probs, {**block, "weight": t.weight, "mode": "cached"}
    return _onnx_outputs(cfg, t, run_dir, prep)


def _cache_name(k: int) -> str:
    # The first teacher's keeps the name runs made before several teachers had.
    return CACHE if k == 0 else f"teacher-{k}.npz"


def _onnx_outputs(
    cfg: TrainConfig, t: Teacher, run_dir: Path, prep: Prepared
) -> tuple[np.ndarray, dict]:
    """An ONNX teacher on every image of every split (each computed once, ever, where the
    cache is kept, so that later runs and evaluations find them all), and its figures on
    the validation split, which say what it knows of FER+."""
    from trainer.evaluate import metrics

    model, yunet = Path(t.path), yunet_for(t.path, cfg.yunet)
    cache_dir = Path(cfg.teacher_cache) if cfg.teacher_cache else run_dir
    teacher = CachedFaceTeacher(model, yunet, cache_dir, len(prep.classes))
    outputs = {}
    for name, split in prep.splits.items():
        probs, mirrored, info = teacher.outputs(split.images, split.hashes)
        outputs[name] = ((probs + mirrored) / 2 if cfg.teacher_tta else probs, info)
        print(
            f"teacher {model.name} on {name}: {info['cached']} images from the cache, "
            f"{info['computed']} computed in {info['seconds']:.1f} s; YuNet found "
            f"{info['found_by_yunet']} of {len(split)} faces",
            flush=True,
        )
    teacher.save()
    figures = {}
    if "val" in outputs:
        val = metrics(prep.splits["val"].labels, outputs["val"][0], prep.classes)
        figures["val"] = {k: val[k] for k in ("accuracy", "macro_f1")}
    probs, info = outputs["train"]
    return probs, {
        "file": str(model),
        "name": model.name,
        "sha256": file_digest(model),
        "aligned_by": str(yunet),
        "metrics": figures,
        "weight": t.weight,
        "mode": "cached",
        "cache": str(teacher.cache),
        "found_by_yunet": round(info["found_by_yunet"] / max(len(probs), 1), 4),
    }


def _version_outputs(
    cfg: TrainConfig, path: str, cache: Path, train: Split
) -> tuple[np.ndarray, float]:
    """An exported teacher's probabilities for every training image and the seconds
    they took, from the run folder's cache where a resumed run has it."""
    if cache.is_file():
        probs, seconds = _read_cache(cache, path, cfg.teacher_tta, train.hashes)
        print(f"teacher outputs read from {cache} (computed in {seconds:.1f} s)", flush=True)
        return probs, seconds
    t0 = time.monotonic()
    probs = load_exported(Path(path)).predict(train.images, flip_tta=cfg.teacher_tta)
    seconds = time.monotonic() - t0
    mirrored = " and their mirrors" if cfg.teacher_tta else ""
    print(
        f"teacher {path}: {len(train)} training images{mirrored} in {seconds:.1f} s "
        f"({len(train) / max(seconds, 1e-9):.0f} images/s)",
        flush=True,
    )
    _write_cache(cache, probs, train.hashes, path, cfg.teacher_tta, seconds)
    return probs, seconds


def _write_cache(
    cache: Path, probs: np.ndarray, hashes: list[str], teacher: str, tta: bool, s: float
) -> None:
    # Written whole under another name, then renamed: a run killed while writing leaves
    # no half cache that a resume would trust.
    tmp = cache.with_name(f".{cache.name}.tmp")
    with tmp.open("wb") as f:
        np.savez(
            f,
            probs=probs.astype(np.float32),
            hashes=np.array(hashes),
            teacher=np.array(teacher),
            teacher_tta=np.array(tta),
            seconds=np.array(s),
        )
    os.replace(tmp, cache)


def _read_cache(
    cache: Path, teacher: str, tta: bool, hashes: list[str]
) -> tuple[np.ndarray, float]:
    """The cached probabilities, refused unless they are for these images and this teacher."""
    fix = f"delete {cache} to compute them again, or start a new run"
    try:
        with np.load(cache, allow_pickle=False) as f:
            cached = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrainerError(f"{cache} is not a readable teacher cache ({e}); {fix}") from e
    if (str(cached["teacher"]), bool(cached["teacher_tta"])) != (teacher, tta):
        raise TrainerError(
            f"{cache} holds the outputs of teacher {cached['teacher']} (TTA "
            f"{bool(cached['teacher_tta'])}), not of {teacher} (TTA {tta}); {fix}"
        )
    if cached["hashes"].tolist() != list(hashes):
        raise TrainerError(
            f"{cache} holds teacher outputs for other images ({len(cached['hashes'])} cached, "
            f"{len(hashes)} training images now, or not the same ones): the data has changed "
            f"since the run started; {fix}"
        )
    return cached["probs"], float(cached["seconds"])
