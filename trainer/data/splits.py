"""Turn a scanned dataset into decoded arrays: a run's splits, or an evaluation set.

For training (``prepare_run``): decodes every image once, drops what the options say
(exact duplicates, blank images), and makes a seeded stratified validation split when the
data has none. For evaluation (``evaluation_set``): one split, decoded at a model's input
size, minus what the evaluation leaves out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from trainer.config import TrainConfig
from trainer.data.dataset import Dataset, Sample, load_dataset
from trainer.data.images import BLANK_STD, decode_all
from trainer.errors import DataError


@dataclass
class Split:
    """Decoded images of one split with one-hot (or soft) targets."""

    images: np.ndarray
    labels: np.ndarray  # int class index per image
    targets: np.ndarray  # [N, classes] float32: one-hot or the vote distribution
    hashes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Prepared:
    """Everything training needs from the data, plus a report of what was left out."""

    classes: list[str]
    splits: dict[str, Split]
    dropped: Counter = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    fingerprint: str = ""  # of the scanned dataset (file names, splits, labels)
    skipped: dict = field(default_factory=dict)  # files passed over while scanning


def _targets(samples: list[Sample], n: int) -> np.ndarray:
    out = np.zeros((len(samples), n), np.float32)
    for i, s in enumerate(samples):
        if s.soft is not None:
            out[i] = s.soft
        else:
            out[i, s.label] = 1.0
    return out


def decode_split(
    samples: list[Sample],
    n_classes: int,
    size: int,
    max_bad: int,
    drop_blank: bool,
    report: Prepared,
) -> Split:
    """Decode samples; unreadable (and optionally blank) images are dropped and recorded."""
    dec = decode_all([s.path for s in samples], size, max_bad=max_bad)
    report.unreadable += [f"{p}: {e}" for p, e in dec.failed]
    report.dropped["unreadable"] += len(dec.failed)
    keep = list(range(len(dec.ok)))
    if drop_blank:
        keep = [i for i in keep if dec.stds[i] >= BLANK_STD]
        report.dropped["blank"] += len(dec.ok) - len(keep)
    kept = [samples[dec.ok[i]] for i in keep]
    return Split(
        dec.images[keep],
        np.array([s.label for s in kept], np.int32),
        _targets(kept, n_classes),
        [dec.hashes[i] for i in keep],
    )


def subset(split: Split, idx) -> Split:
    idx = np.asarray(idx, dtype=np.int64)
    return Split(
        split.images[idx], split.labels[idx], split.targets[idx], [split.hashes[i] for i in idx]
    )


def drop_duplicates(splits: dict[str, Split], report: Prepared) -> None:
    """Keep the first copy of every image: within train, and none in val/test seen in train."""
    seen: set[str] = set()
    for name in ("train", "val", "test"):
        if name not in splits:
            continue
        keep = []
        for i, h in enumerate(splits[name].hashes):
            if h not in seen:
                keep.append(i)
                seen.add(h)
        report.dropped[f"duplicate ({name})"] += len(splits[name]) - len(keep)
        splits[name] = subset(splits[name], keep)


def prepare(ds: Dataset, cfg: TrainConfig) -> Prepared:
    """Decode and split ``ds`` as ``cfg`` says; raise DataError if a split ends up empty."""
    report = Prepared(ds.classes, {})
    n = len(ds.classes)
    train_name = "train" if "train" in ds.splits() else "all"
    for name in (train_name, "val", "test"):
        samples = ds.split(name)
        if samples:
            split = decode_split(samples, n, cfg.input_size, cfg.max_bad, cfg.drop_blank, report)
            report.splits["train" if name == "all" else name] = split
    if "val" not in report.splits:
        train = report.splits["train"]
        tr, va = train_test_split(
            np.arange(len(train)),
            test_size=cfg.val_fraction,
            random_state=cfg.seed,
            stratify=_stratify(train.labels),
        )
        report.splits["train"], report.splits["val"] = subset(train, tr), subset(train, va)
    if cfg.drop_duplicates:
        drop_duplicates(report.splits, report)
    for name in ("train", "val"):
        if len(report.splits[name]) == 0:
            raise DataError(f"the {name} split is empty after dropping unusable images")
    return report


def prepare_run(cfg: TrainConfig) -> Prepared:
    """The run's dataset, scanned as ``cfg`` says, decoded and split."""
    ds = load_dataset(
        Path(cfg.data),
        Path(cfg.labels) if cfg.labels else None,
        cfg.label_column,
        cfg.soft_labels,
        cfg.min_votes,
    )
    prep = prepare(ds, cfg)
    prep.fingerprint = ds.fingerprint()
    prep.skipped = dict(ds.skipped)
    return prep


def _stratify(labels: np.ndarray) -> np.ndarray | None:
    # A class with a single image cannot be stratified; fall back to a plain random split.
    return labels if np.bincount(labels).min(initial=2) >= 2 else None


def class_weights(labels: np.ndarray, n: int, mode: str) -> dict[int, float] | None:
    """Per-class loss weights: sklearn's "balanced", its square root, or none."""
    if mode == "none":
        return None
    present = np.unique(labels)
    w = compute_class_weight("balanced", classes=present, y=labels)
    if mode == "sqrt":
        w = np.sqrt(w)
    weights = dict.fromkeys(range(n), 1.0)
    weights.update({int(c): float(x) for c, x in zip(present, w, strict=True)})
    return weights


@dataclass
class EvaluationSet:
    """Decoded, labelled images of one evaluation set and what was left out of it."""

    images: np.ndarray  # uint8, (n, size, size, 3), gray in three channels
    y: np.ndarray  # class indices into ``classes``
    classes: list[str]
    dropped: dict[str, int]


def evaluation_set(
    data: Path,
    size: int,
    *,
    labels: Path | None = None,
    label_column: str = "label",
    split: str | None = None,
    exclude_duplicates_of: Path | None = None,
    drop_blank: bool = False,
) -> EvaluationSet:
    """The images ``evaluate`` measures on, decoded at ``size``: one split of ``data``, minus
    unreadable files, blanks and copies of ``exclude_duplicates_of`` images if asked.
    (Public so benchmarks can run other models on exactly the same images.)"""
    ds = load_dataset(data, labels, label_column, require_all=False)
    samples = ds.split(split) if split else ds.samples
    if not samples:
        raise DataError(f"no images in split {split!r} of {data} (splits: {ds.splits()})")
    dec = decode_all([s.path for s in samples], size)
    keep = list(range(len(dec.ok)))
    dropped = {"unreadable": len(dec.failed)}
    if drop_blank:
        keep = [i for i in keep if dec.stds[i] >= BLANK_STD]
        dropped["blank"] = len(dec.ok) - len(keep)
    if exclude_duplicates_of is not None:
        seen = set(decode_all(_all_files(exclude_duplicates_of), 8).hashes)
        before = len(keep)
        keep = [i for i in keep if dec.hashes[i] not in seen]
        dropped["also in " + str(exclude_duplicates_of)] = before - len(keep)
    y = np.array([samples[dec.ok[i]].label for i in keep])
    return EvaluationSet(dec.images[keep], y, ds.classes, dropped)


def _all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
