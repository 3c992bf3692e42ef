"""Find a labelled face dataset on disk: class folders, optional splits, optional CSV labels.

Two layouts are read, the same ones the Kaggle FER datasets use:

* ``ROOT/<class>/*.jpg`` (no split: the trainer makes a stratified one);
* ``ROOT/train/<class>/…`` plus ``ROOT/test/<class>/…`` (and optionally ``val``).

A CSV file may replace the folder labels (``file`` relative to ROOT, a hard-label column,
optionally per-class vote columns for soft labels and a usage column for splits).
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
# FER+ names its splits after the FER2013 "Usage" column.
DEFAULT_USAGE_MAP = {
    "training": "train",
    "publictest": "val",
    "privatetest": "test",
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
# FER+ vote columns mapped onto the 7 FER2013 classes. Contempt has no class of its own
# here, and unknown / not-a-face votes say nothing about which emotion is shown, so those
# votes are dropped and the remaining ones renormalised (see soft_labels()).
FERPLUS_VOTE_COLUMNS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprise": "surprise",
}


@dataclass
class Sample:
    """One labelled image: where it is, which split it belongs to and its label."""

    path: Path
    split: str  # "train", "val", "test" or "all" (no split given)
    label: int
    soft: np.ndarray | None = None


@dataclass
class Dataset:
    """The samples of a dataset with its class order and what was skipped on the way."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: Counter = field(default_factory=Counter)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def splits(self) -> list[str]:
        return sorted({s.split for s in self.samples})

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, every class listed even when it has none."""
        out: dict[str, dict[str, int]] = {}
        for name in self.splits():
            c = Counter(self.classes[s.label] for s in self.split(name))
            out[name] = {k: c.get(k, 0) for k in self.classes}
        return out

    def fingerprint(self) -> str:
        """A short hash of file names, splits and labels: two runs on the same data agree."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: str(s.path)):
            h.update(f"{s.path.relative_to(self.root)}|{s.split}|{s.label}\n".encode())
        return h.hexdigest()[:16]


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def detect_layout(root: Path) -> dict[str, Path]:
    """Map split name to the folder holding its class folders (``{"all": root}`` if none)."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    subdirs = {d.name.lower(): d for d in _class_dirs(root)}
    if not subdirs:
        raise DataError(
            f"data folder {root} is empty: expected ROOT/<class>/*.jpg or ROOT/train/<class>/*.jpg"
        )
    splits = {SPLIT_FOLDERS[k]: d for k, d in subdirs.items() if k in SPLIT_FOLDERS}
    if "train" in splits or ("test" in splits and len(splits) == len(subdirs)):
        return splits
    return {"all": root}


def folder_classes(root: Path) -> list[str]:
    """Class names as sorted folder names, taken from the training (or only) split."""
    layout = detect_layout(root)
    folder = layout.get("train") or layout.get("all") or next(iter(layout.values()))
    classes = [d.name for d in _class_dirs(folder)]
    if len(classes) < 2:
        raise DataError(f"{folder} has {len(classes)} class folder(s); at least 2 are needed")
    return classes


def scan_folders(root: Path, require_all: bool = True) -> Dataset:
    """Read labels from class-folder names."""
    root = root.resolve()
    classes = folder_classes(root)
    samples: list[Sample] = []
    skipped: Counter = Counter()
    for split, folder in detect_layout(root).items():
        for d in _class_dirs(folder):
            if d.name not in classes:
                raise DataError(f"class folder {d} is not one of the training classes {classes}")
            files = sorted(p for p in d.iterdir() if p.is_file())
            images = [p for p in files if _is_image(p)]
            skipped["not an image file"] += len(files) - len(images)
            idx = classes.index(d.name)
            samples += [Sample(p, split, idx) for p in images]
    ds = Dataset(root, classes, samples, skipped)
    _check_classes_present(ds, require_all)
    return ds


def _check_classes_present(ds: Dataset, require_all: bool = True) -> None:
    first = "train" if "train" in ds.splits() else "all"
    if first not in ds.splits():
        raise DataError(f"no images found under {ds.root}")
    if not require_all:  # evaluation sets may lack a class
        return
    counts = ds.counts()[first]
    empty = [k for k, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"class(es) with no images in the {first} split: {', '.join(empty)}")


def scan_csv(
    root: Path,
    csv_path: Path,
    label_column: str,
    soft: bool = False,
    usage_column: str | None = "usage",
    min_votes: int = 2,
    require_all: bool = True,
) -> Dataset:
    """Read labels (and optionally vote-based soft labels and splits) from a CSV file.

    Args:
        root: the folder the CSV's ``file`` column is relative to.
        csv_path: the CSV file.
        label_column: column holding the hard label (a class name); empty means unlabelled.
        soft: also read FER+-style vote columns into a probability vector per image.
        usage_column: column naming each image's split, if present in the file.
        min_votes: votes below this count are dropped as annotator noise (FER+ practice).
    """
    root = root.resolve()
    classes = folder_classes(root)
    if not csv_path.is_file():
        raise DataError(f"label file {csv_path} does not exist")
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"label file {csv_path} has no rows")
    columns = set(rows[0])
    for needed in ("file", label_column):
        if needed not in columns:
            raise DataError(
                f"label file {csv_path} has no column {needed!r} "
                f"(columns: {', '.join(sorted(columns))})"
            )
    vote_cols = _vote_columns(columns, classes) if soft else {}
    unknown = sorted({r[label_column] for r in rows} - set(classes) - {""})
    if unknown:
        raise DataError(
            f"unknown label(s) in column {label_column!r} of {csv_path}: "
            f"{', '.join(unknown[:10])}; classes are {', '.join(classes)}"
        )
    has_usage = bool(usage_column) and usage_column in columns
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    for row in rows:
        if not row[label_column]:
            skipped["no label in CSV"] += 1
            continue
        path = root / row["file"]
        if not path.is_file():
            skipped["file listed in CSV is missing"] += 1
            continue
        split = _usage_split(row[usage_column]) if has_usage else _folder_split(root, path)
        label = classes.index(row[label_column])
        vec = soft_labels(row, vote_cols, classes, label, min_votes) if soft else None
        samples.append(Sample(path, split, label, vec))
    ds = Dataset(root, classes, samples, skipped)
    _check_classes_present(ds, require_all)
    return ds


def _vote_columns(columns: set[str], classes: list[str]) -> dict[str, str]:
    cols = {c: k for c, k in FERPLUS_VOTE_COLUMNS.items() if c in columns and k in classes}
    cols.update({k: k for k in classes if k in columns})
    if {cols[c] for c in cols} != set(classes):
        missing = set(classes) - {cols[c] for c in cols}
        raise DataError(
            f"soft labels need a vote column for every class; none for {', '.join(sorted(missing))}"
        )
    return cols


def soft_labels(
    row: dict, vote_cols: dict[str, str], classes: list[str], label: int, min_votes: int
) -> np.ndarray:
    """The vote distribution over our classes, falling back to one-hot when votes are empty."""
    vec = np.zeros(len(classes), np.float32)
    for col, cls in vote_cols.items():
        v = float(row[col] or 0)
        vec[classes.index(cls)] += v if v >= min_votes else 0.0
    if vec.sum() <= 0:
        vec[label] = 1.0
    return vec / vec.sum()


def _usage_split(value: str) -> str:
    key = value.strip().lower()
    if key not in DEFAULT_USAGE_MAP:
        raise DataError(
            f"unknown usage value {value!r}; expected one of Training, "
            "PublicTest, PrivateTest, train, val, test"
        )
    return DEFAULT_USAGE_MAP[key]


def _folder_split(root: Path, path: Path) -> str:
    top = path.relative_to(root).parts[0].lower()
    return SPLIT_FOLDERS.get(top, "all")


def load_dataset(
    root: Path,
    labels: Path | None = None,
    label_column: str = "label",
    soft: bool = False,
    min_votes: int = 2,
    require_all: bool = True,
) -> Dataset:
    """Folder labels, or CSV labels when ``labels`` is given.

    ``require_all``: every class must have images in the training (or only) split.
    """
    if labels is None:
        if soft:
            raise DataError("soft labels need a CSV label file (--labels) with vote columns")
        return scan_folders(root, require_all)
    return scan_csv(
        root, labels, label_column, soft=soft, min_votes=min_votes, require_all=require_all
    )
