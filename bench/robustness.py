"""Accuracy on FER+ under what real photos do to a face: one row per perturbation of
bench/perturbations.py, one column per model version, side by side in one run.

    python -m bench.robustness [--model-dir models/emotion/2 --model-dir models/emotion/6]
        [--split val|test] [--only lowres,occlude] [--limit 300] [--out DIR]

The images are the ones ``python -m trainer evaluate`` measures (trainer.data.splits'
evaluation_set, FER+ majority labels), decoded once at the model's input size; every
perturbation is applied to them once, with a seed, and the same perturbed images go to
every version. The models run as the service runs them (service.model.runtime.make_classifier,
flip TTA on unless --no-flip). Each cell is the accuracy in %, and in brackets its change
from the clean accuracy in points; the last rows are the mean over the perturbations and
the worst drop. --out writes the table as Markdown and every figure, macro F1 included,
as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bench import perturbations
from bench.images import SHARED
from bench.server import ROOT
from service.model.runtime import PRECISIONS, RUNTIMES

LABEL_COLUMN = "ferplus_label"
SPLIT_NAMES = {"val": "PublicTest", "test": "PrivateTest"}

if TYPE_CHECKING:
    from service.model.classifier import VersionClassifier


class Model(Protocol):
    """What is measured: the service's classifier, or a test's fake."""

    labels: list[str]
    input_size: int

    def predict(self, faces: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Score:
    """One cell: a version on one perturbation."""

    accuracy: float
    macro_f1: float


@dataclass
class VersionResult:
    """One column: a version's score on the clean images and on each perturbation."""

    label: str
    clean: Score
    perturbed: dict[str, Score] = field(default_factory=dict)

    def drop(self, name: str) -> float:
        """Accuracy lost to perturbation ``name`` (positive when worse than clean)."""
        return self.clean.accuracy - self.perturbed[name].accuracy

    def mean_accuracy(self) -> float:
        """The mean accuracy over the perturbations."""
        return statistics.fmean(s.accuracy for s in self.perturbed.values())

    def worst(self) -> tuple[str, float]:
        """The perturbation that costs the most accuracy, and its drop."""
        name = max(self.perturbed, key=self.drop)
        return name, self.drop(name)


def score(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> Score:
    """Accuracy and macro F1 as the trainer's evaluation computes them."""
    from trainer.evaluate import metrics  # imports TensorFlow: only when scoring

    m = metrics(y, probs, labels)
    return Score(m["accuracy"], m["macro_f1"])


def measure(
    models: Mapping[str, Model],
    images: Mapping[int, np.ndarray],
    y: np.ndarray,
    names: Sequence[str],
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[VersionResult]:
    """Every model on the clean images and on each perturbation ``names``.

    Args:
        models: column label -> loaded model.
        images: input size -> clean uint8 faces at that size (the same faces, in order).
        y: the true class index of each face, in the models' label order.
        names: perturbations of bench.perturbations, in row order.
        seed: makes the random perturbations (noise, rotation, jitter) repeatable.
        log: called with a progress line per perturbation, if given.
    """
    results: dict[str, VersionResult] = {}
    for name in (perturbations.CLEAN, *names):
        t0 = time.perf_counter()
        # Perturbed once per input size, shared by every version of that size.
        batches = {size: perturbations.apply(name, x, seed) for size, x in images.items()}
        for label, model in models.items():
            s = score(y, model.predict(batches[model.input_size]), model.labels)
            if name == perturbations.CLEAN:
                results[label] = VersionResult(label, s)
            else:
                results[label].perturbed[name] = s
        if log:
            log(f"{name:24} {time.perf_counter() - t0:6.1f} s")
    return list(results.values())


def _cell(accuracy: float, clean: float | None = None) -> str:
    text = f"{100 * accuracy:.1f}"
    return text if clean is None else f"{text} ({100 * (accuracy - clean):+.1f})"


def table_rows(results: Sequence[VersionResult]) -> list[list[str]]:
    """The table as rows of strings: header, clean, one per perturbation, mean, worst."""
    rows = [["perturbation", *(r.label for r in results)]]
    rows.append(["clean", *(_cell(r.clean.accuracy) for r in results)])
    for name in results[0].perturbed:
        rows.append([name, *(_cell(r.perturbed[name].accuracy, r.clean.accuracy) for r in results)])
    rows.append(
        ["mean over perturbations", *(_cell(r.mean_accuracy(), r.clean.accuracy) for r in results)]
    )
    rows.append(["worst drop", *(f"{-100 * r.worst()[1]:+.1f} {r.worst()[0]}" for r in results)])
    return rows


def markdown(rows: list[list[str]]) -> str:
    """Rows as a Markdown table, padded so it also reads as plain text."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def to_json(results: Sequence[VersionResult], context: dict) -> dict:
    """Every figure of the run: per version, each cell's accuracy, macro F1 and drop."""

    def version(r: VersionResult) -> dict:
        worst, drop = r.worst()
        cells = {
            n: {"accuracy": s.accuracy, "macro_f1": s.macro_f1, "drop": round(r.drop(n), 4)}
            for n, s in r.perturbed.items()
        }
        return {
            "clean": {"accuracy": r.clean.accuracy, "macro_f1": r.clean.macro_f1},
            "perturbations": cells,
            "mean_accuracy": round(r.mean_accuracy(), 4),
            "worst_drop": {"perturbation": worst, "drop": round(drop, 4)},
        }

    return {**context, "versions": {r.label: version(r) for r in results}}


def _load_models(dirs: Sequence[Path], args: argparse.Namespace) -> dict[str, VersionClassifier]:
    from service.model.runtime import make_classifier

    models: dict[str, VersionClassifier] = {}
    for d in dirs:
        m = make_classifier(d, args.runtime, args.precision, args.threads, not args.no_flip)
        if not m.ready:
            raise SystemExit(f"model {d} did not load: {m.error}")
        first = next(iter(models.values()), m)
        if m.labels != first.labels:
            raise SystemExit(f"{d} has labels {m.labels}, {first.folder} {first.labels}")
        label = f"v{m.version}" if f"v{m.version}" not in models else str(d)
        models[label] = m
        print(f"{label}: {m.folder} ({m.runtime}, {m.precision})", file=sys.stderr)
    return models


def _evaluation_images(args: argparse.Namespace, sizes: set[int], classes: list[str]):
    from trainer.data.splits import evaluation_set

    labels = args.labels or args.data / "ferplus.csv"
    images, y = {}, None
    for size in sorted(sizes):
        ev = evaluation_set(
            args.data, size, labels=labels, label_column=LABEL_COLUMN, split=args.split
        )
        if ev.classes != classes:
            raise SystemExit(f"the data's classes {ev.classes} differ from the model's {classes}")
        keep = spread(len(ev.y), args.limit)
        images[size], y = ev.images[keep], ev.y[keep]
    return images, y


def spread(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``n`` (all of them without a limit).

    The evaluation set is in class-folder order, so its first images are nearly all one
    FER2013 class: an even spread is the quick look that resembles the whole split.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    return np.arange(limit) * n // limit


def _default_dirs() -> list[Path]:
    """Every version in the tree (the served one and at most one other), oldest first."""
    root = ROOT / "models" / "emotion"
    return sorted((d for d in root.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        help="a version folder (or models/<name> for its highest version); repeat it for "
        "more columns (default: every version in models/emotion)",
    )
    p.add_argument("--data", type=Path, default=SHARED / "data" / "fer2013")
    p.add_argument("--labels", type=Path, help="FER+ label CSV (default: DATA/ferplus.csv)")
    p.add_argument("--split", choices=tuple(SPLIT_NAMES), default="val")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="bf16: OpenVINO only")
    p.add_argument("--threads", type=int, default=0, help="inference threads; 0: the runtime's")
    p.add_argument("--no-flip", action="store_true", help="without the service's flip TTA")
    p.add_argument(
        "--limit", type=_positive, help="only N images spread over the split, for a quick look"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma-separated perturbations or families (lowres,gamma)")
    p.add_argument("--out", type=Path, help="write robustness_<split>.md and .json here")
    return p


def _context(args: argparse.Namespace, images: int, models: dict[str, VersionClassifier]) -> dict:
    return {
        "split": args.split,
        "images": images,
        "seed": args.seed,
        "flip_tta": not args.no_flip,
        "limit": args.limit,
        "data": str(args.data),
        "models": {
            k: {"folder": str(m.folder), "runtime": m.runtime, "precision": m.precision}
            for k, m in models.items()
        },
    }


def _write(out: Path, split: str, text: str, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"robustness_{split}.md").write_text(text + "\n")
    (out / f"robustness_{split}.json").write_text(json.dumps(report, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF is imported for the metrics only
    try:
        names = perturbations.select(args.only)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    dirs = args.model_dir or _default_dirs()
    if not dirs:
        raise SystemExit("no model: pass --model-dir")
    t0 = time.perf_counter()
    models = _load_models(dirs, args)
    classes = next(iter(models.values())).labels
    images, y = _evaluation_images(args, {m.input_size for m in models.values()}, classes)
    results = measure(models, images, y, names, args.seed, lambda s: print(s, file=sys.stderr))
    text = (
        f"FER+ {args.split} ({SPLIT_NAMES[args.split]}), {len(y)} images, flip TTA "
        f"{'off' if args.no_flip else 'on'}, seed {args.seed}: accuracy %, (change from clean)"
        f"\n\n{markdown(table_rows(results))}"
    )
    print(f"{text}\n\nwall time {time.perf_counter() - t0:.1f} s")
    if args.out:
        report = to_json(results, _context(args, len(y), models))
        _write(args.out, args.split, text, report)


if __name__ == "__main__":
    main()
