"""Prior (logit) adjustment: one exported version's probabilities re-weighted per class.

The finetune recipe trains with square-root class weights, which is good for the rare
classes' recall but moves every prediction away from the class priors, at a cost in
accuracy. Multiplying the probabilities by ``exp(b)``, one offset ``b`` per class, and
renormalising (the post-hoc logit adjustment of Menon et al., "Long-tail learning via logit
adjustment", 2021; Saerens et al.'s prior correction, 2002) moves the decisions back. The
offsets are tuned on the validation split only (never the test split), the way the service
runs the model: the adjustment sits inside the signature, so each of the two flip-TTA
passes is adjusted before they are averaged. Measured on FER+ PublicTest: +0.8 points of
accuracy held out (tuned on one half, measured on the other) for version 7, +0.4 for
version 8, and no measurable cost at serving. The held-out figure is the one to trust: the
gain on the whole split the offsets were tuned on is larger by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from trainer.contract import ModelContract
from trainer.data.splits import Split
from trainer.errors import TrainerError
from trainer.evaluate import Exported, metrics
from trainer.export import Composite

METHOD = "post-hoc prior (logit) adjustment: probabilities * exp(offset), renormalised"
TUNED_ON = "validation split, flip TTA"
OBJECTIVES = ("accuracy", "macro_f1")
HELD_OUT_SPLITS, HELD_OUT_SEED = 5, 0  # random halves, each tuned on and measured on
# Scores at most this many candidate x image x class values at once (memory, not speed).
_CHUNK = 4_000_000


@dataclass(frozen=True)
class Search:
    """How the offsets are searched: the options of ``python -m trainer adjust``."""

    objective: str = "accuracy"  # maximised on the validation split: accuracy or macro_f1
    bound: float = 2.0  # offsets are searched in [-bound, bound] (--range) ...
    step: float = 0.1  # ... on a grid of this step, which includes 0
    rounds: int = 4  # passes of coordinate ascent over the classes
    # A second validation set (face crops, ``--also``) and its share of the objective:
    # (1 - also_weight) x the objective on the validation split + also_weight x on it.
    also: str = ""
    also_weight: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (self.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}"),
            (self.bound > 0, "--range must be positive"),
            (0 < self.step <= self.bound, "--step must be positive and at most --range"),
            (self.rounds >= 1, "--rounds must be at least 1"),
            (0 <= self.also_weight < 1, "--also-weight must be in [0, 1)"),
            (bool(self.also) or self.also_weight == 0, "--also-weight needs --also CROPS.npz"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainerError(message)

    @property
    def grid(self) -> np.ndarray:
        k = int(np.floor(self.bound / self.step + 1e-9))
        return np.round(self.step * np.arange(-k, k + 1), 6)

    def to_json(self) -> dict[str, Any]:
        also = {"also": self.also, "also_weight": self.also_weight} if self.also else {}
        return {"range": self.bound, "step": self.step, "rounds": self.rounds, **also}


def read_source(folder: Path) -> ModelContract:
    """``folder``'s contract, refused unless it is a trained version (not an ensemble, not
    already adjusted) whose validation split can be rebuilt from its metadata."""
    source = ModelContract.read(folder)
    if "adjustment" in source.details:
        raise TrainerError(f"{folder} is already prior-adjusted: adjust its source instead")
    if "ensemble" in source.details:
        raise TrainerError(f"{folder} is an ensemble: adjust a trained version")
    if "training" not in source.details or "fingerprint" not in source.details.get("dataset", {}):
        raise TrainerError(
            f"{folder} is not a trained version (no training options or dataset in its "
            "metadata): its validation split cannot be rebuilt"
        )
    return source


def normalise(probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``probs * exp(offsets)`` renormalised over the last axis."""
    q = np.asarray(probs, np.float64) * np.exp(offsets)
    return q / q.sum(axis=-1, keepdims=True)


class PriorAdjusted(Composite):
    """One exported version behind a signature that returns its adjusted probabilities."""

    def __init__(self, folder: Path, contract: ModelContract, offsets: np.ndarray):
        super().__init__("prior_adjusted", [folder], [contract])
        self.offsets = np.asarray(offsets, np.float64)

    def combine(self, outputs: list[tf.Tensor]) -> tf.Tensor:
        # A constant of the graph: the offsets need no variable, nor the source folder.
        q = outputs[0] * tf.constant(np.exp(self.offsets), outputs[0].dtype)
        return q / tf.reduce_sum(q, axis=1, keepdims=True)

    def reference(self, outputs: list[np.ndarray]) -> np.ndarray:
        return normalise(outputs[0], self.offsets)


@dataclass(frozen=True)
class Passes:
    """A version's probabilities for some images and for their mirrors, with the labels."""

    plain: np.ndarray
    mirrored: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, source: Exported, split: Split) -> Passes:
        mirrored = split.images[:, :, ::-1, :]
        return cls(source.predict(split.images), source.predict(mirrored), split.labels)

    def subset(self, idx: np.ndarray) -> Passes:
        return Passes(self.plain[idx], self.mirrored[idx], self.labels[idx])

    def tta(self, offsets: np.ndarray) -> np.ndarray:
        """What the service returns with ``offsets`` in the signature: each pass adjusted,
        then the two averaged. ``offsets`` may hold candidates: shape (..., 1, classes)."""
        return (normalise(self.plain, offsets) + normalise(self.mirrored, offsets)) / 2.0


def scores(passes: Passes, candidates: np.ndarray, objective: str) -> np.ndarray:
    """The objective of each row of ``candidates`` (offsets, shape (n, classes))."""
    step = max(1, _CHUNK // max(1, passes.plain.size))
    k = passes.plain.shape[1]
    out = []
    for i in range(0, len(candidates), step):
        pred = passes.tta(candidates[i : i + step, None, :]).argmax(axis=-1)
        out.append(_score(pred, passes.labels, objective, k))
    return np.concatenate(out)


def _score(pred: np.ndarray, labels: np.ndarray, objective: str, k: int) -> np.ndarray:
    """Accuracy or macro F1 over ``k`` classes of each row of ``pred`` (candidates x images)."""
    if objective == "accuracy":
        return (pred == labels).mean(axis=1)
    # sklearn's f1_score(average="macro", zero_division=0) over every class, for all the
    # candidates at once: the search scores thousands of them.
    classes = np.arange(k)[:, None, None]
    hits = ((pred == labels) & (labels == classes)).sum(axis=2).T
    predicted = (pred == classes).sum(axis=2).T
    both = predicted + np.bincount(labels, minlength=k)
    return np.where(both > 0, 2 * hits / np.maximum(both, 1), 0.0).mean(axis=1)


def search_offsets(passes: Passes, search: Search, also: Passes | None = None) -> np.ndarray:
    """Per-class offsets maximising the objective (on ``passes``, and on ``also`` at its
    share ``search.also_weight``): coordinate ascent over the grid from 0, ties going to
    the smaller |offset|, so an offset that helps nothing stays 0."""
    grid = search.grid
    by_size = grid[np.argsort(np.abs(grid), kind="stable")]
    offsets = np.zeros(passes.plain.shape[1])
    for _ in range(search.rounds):
        before = offsets.copy()
        for c in range(len(offsets)):
            candidates = np.repeat(offsets[None], len(by_size), axis=0)
            candidates[:, c] = by_size
            # The current value is on the grid, so the objective never falls.
            found = scores(passes, candidates, search.objective)
            if also is not None:
                w = search.also_weight
                found = (1 - w) * found + w * scores(also, candidates, search.objective)
            offsets[c] = by_size[np.argmax(found)]
        if np.array_equal(offsets, before):
            break
    return offsets


def held_out_gain(passes: Passes, search: Search, also: Passes | None = None) -> dict[str, Any]:
    """The objective's gain on validation images the offsets were not tuned on: random
    halves, tuned on one (and ``also``) and measured on the other, both ways."""
    rng = np.random.default_rng(HELD_OUT_SEED)
    n, gains = len(passes.labels), []
    for _ in range(HELD_OUT_SPLITS):
        order = rng.permutation(n)
        halves = order[: n // 2], order[n // 2 :]
        for tune_on, measure_on in (halves, halves[::-1]):
            offsets = search_offsets(passes.subset(tune_on), search, also)
            before, after = scores(
                passes.subset(measure_on), np.stack([0 * offsets, offsets]), search.objective
            )
            gains.append(after - before)
    return {
        "mean": round(float(np.mean(gains)), 4),
        "sd": round(float(np.std(gains, ddof=1)), 4),
        "splits": len(gains),
    }


@dataclass(frozen=True)
class Tuning:
    """The offsets tuned on a validation split, and what they change there."""

    offsets: np.ndarray
    before: dict  # evaluate.metrics of the flip-TTA output without offsets
    after: dict  # ... and with them
    held_out: dict  # held_out_gain's
    also: dict | None = None  # on the --also crops: {"before": metrics, "after": metrics}

    def describe(self, folder: Path, source: ModelContract, search: Search) -> dict[str, Any]:
        """The ``adjustment`` block of the adjusted version's metadata."""
        return {
            "method": METHOD,
            "source": {
                "folder": str(folder),
                "version": source.version,
                "code_revision": source.details.get("code_revision"),
            },
            "offsets": {c: float(b) for c, b in zip(source.labels, self.offsets, strict=True)},
            "objective": search.objective,
            "tuned_on": TUNED_ON + (f"; and {search.also}" if search.also else ""),
            "search": search.to_json(),
            "validation": {
                "images": self.before["images"],
                **{f"{k}_before": self.before[k] for k in ("accuracy", "macro_f1")},
                **{f"{k}_after": self.after[k] for k in ("accuracy", "macro_f1")},
            },
            "held_out_gain": self.held_out,
            **({"also": _also_block(search, self.also)} if self.also else {}),
        }


def _also_block(search: Search, also: dict) -> dict[str, Any]:
    def headline(m: dict) -> dict:
        recall = float(np.mean([c["recall"] for c in m["per_class"].values()]))
        return {"accuracy": m["accuracy"], "macro_recall": round(recall, 4)}

    return {
        "crops": search.also,
        "weight": search.also_weight,
        "images": also["before"]["images"],
        "before": headline(also["before"]),
        "after": headline(also["after"]),
    }


def read_crops(path: Path, labels: list[str], size: int) -> Split:
    """Face crops saved by ``python -m bench.cross_dataset --crops``: the model's input as
    the service cut it (uint8 [N, size, size, 3]) and their labels."""
    try:
        with np.load(path, allow_pickle=False) as f:
            images, y, classes = f["images"], f["labels"], [str(c) for c in f["classes"]]
    except (OSError, KeyError, ValueError) as e:
        raise TrainerError(f"--also {path}: not a crops file of bench.cross_dataset ({e})") from e
    if classes != list(labels):
        raise TrainerError(f"--also {path}: its classes {classes} are not the model's {labels}")
    if images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise TrainerError(
            f"--also {path}: crops of shape {images.shape[1:]} {images.dtype}, the model "
            f"takes ({size}, {size}, 3) uint8: save them again with this model"
        )
    targets = np.eye(len(labels), dtype=np.float32)[y]
    return Split(images, y.astype(np.int32), targets, [])


def tune(source: Exported, val: Split, search: Search) -> Tuning:
    """Offsets for ``source`` tuned on the validation split ``val`` (and, with
    ``search.also``, on those crops too; never on a test split)."""
    if len(val) < 4:
        raise TrainerError(f"{len(val)} validation images: too few to tune offsets on")
    labels = list(source.contract.labels)
    passes = Passes.of(source, val)
    also = None
    if search.also:
        crops = read_crops(Path(search.also), labels, source.contract.input_size)
        also = Passes.of(source, crops)
    offsets = search_offsets(passes, search, also)
    return Tuning(
        offsets,
        metrics(passes.labels, passes.tta(0 * offsets), labels),
        metrics(passes.labels, passes.tta(offsets), labels),
        held_out_gain(passes, search, also),
        None
        if also is None
        else {
            "before": metrics(also.labels, also.tta(0 * offsets), labels),
            "after": metrics(also.labels, also.tta(offsets), labels),
        },
    )
