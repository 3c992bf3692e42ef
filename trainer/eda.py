"""Exploratory data analysis: counts, balance, samples, sizes, duplicates, leaks, blanks.

``run_eda`` writes ``report.md``, ``eda.json`` (the same numbers) and figures into a folder.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from trainer import figures
from trainer.data.dataset import Dataset, load_dataset
from trainer.data.images import BLANK_STD, pixel_hash

SAMPLES_PER_CLASS = 5


def _inspect(path: Path):
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
            im.seek(0)
            gray = np.asarray(im.convert("L"), dtype=np.uint8)
        return {"size": size, "mode": mode, "hash": pixel_hash(gray), "std": float(gray.std())}
    except Exception as e:  # noqa: BLE001 - every unreadable file is reported, whatever broke
        return {"error": f"{type(e).__name__}: {e}"}


def analyse(ds: Dataset, workers: int = 4) -> dict:
    """All numbers of the report as one JSON-ready dict."""
    with ThreadPoolExecutor(workers) as pool:
        info = list(pool.map(_inspect, [s.path for s in ds.samples]))
    ok = [(s, i) for s, i in zip(ds.samples, info, strict=True) if "error" not in i]
    counts = ds.counts()
    main = counts.get("train") or counts.get("all") or {}
    nonzero = [n for n in main.values() if n]
    groups: dict[str, list] = defaultdict(list)
    for s, i in ok:
        groups[i["hash"]].append(s)
    dups = [g for g in groups.values() if len(g) > 1]
    rel = lambda s: str(s.path.relative_to(ds.root))  # noqa: E731
    return {
        "root": str(ds.root),
        "classes": ds.classes,
        "images": len(ds.samples),
        "counts": counts,
        "imbalance_ratio": round(max(nonzero) / min(nonzero), 2) if nonzero else None,
        "sizes": dict(Counter(f"{i['size'][0]}x{i['size'][1]}" for _, i in ok).most_common(20)),
        "modes": dict(Counter(i["mode"] for _, i in ok)),
        "duplicates": {
            "groups": len(dups),
            "images_in_groups": sum(len(g) for g in dups),
            "redundant_copies": sum(len(g) - 1 for g in dups),
            "groups_with_conflicting_labels": sum(1 for g in dups if len({s.label for s in g}) > 1),
            "examples": [[rel(s) for s in g[:4]] for g in dups[:10]],
        },
        "leakage": _leakage(dups, rel),
        "blank": sorted(rel(s) for s, i in ok if i["std"] < BLANK_STD),
        "unreadable": [
            f"{rel(s)}: {i['error']}" for s, i in zip(ds.samples, info, strict=True) if "error" in i
        ],
        "skipped": dict(ds.skipped),
    }


def _leakage(dups: list[list], rel) -> dict:
    """Duplicate groups that span the training split and an evaluation split."""
    leaks = [
        g for g in dups if "train" in {s.split for s in g} and {s.split for s in g} - {"train"}
    ]
    held_out = sum(1 for g in leaks for s in g if s.split != "train")
    return {
        "groups": len(leaks),
        "held_out_images_also_in_train": held_out,
        "examples": [[f"{s.split}:{rel(s)}" for s in g[:4]] for g in leaks[:10]],
    }


def run_eda(data: Path, out: Path, labels: Path | None = None, label_column: str = "label") -> Path:
    t0 = time.monotonic()
    ds = load_dataset(data, labels, label_column)
    res = analyse(ds)
    res["seconds"] = round(time.monotonic() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    figures.bar_counts(res["counts"], out / "class_counts.png")
    figures.sample_grid(_samples(ds), ds.classes, out / "samples.png")
    figures.size_and_mode(res["sizes"], res["modes"], out / "sizes_modes.png")
    (out / "eda.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "report.md").write_text(markdown(res))
    return out / "report.md"


def _samples(ds: Dataset) -> dict[str, list[Path]]:
    rng = np.random.default_rng(0)
    by_class: dict[str, list[Path]] = {c: [] for c in ds.classes}
    for s in ds.samples:
        by_class[ds.classes[s.label]].append(s.path)
    return {
        c: [p[i] for i in rng.permutation(len(p))[:SAMPLES_PER_CLASS]] for c, p in by_class.items()
    }


def markdown(res: dict) -> str:
    classes = res["classes"]
    splits = list(res["counts"])
    rows = ["| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    rows += [
        f"| {c} | " + " | ".join(str(res["counts"][s][c]) for s in splits) + " |" for c in classes
    ]
    rows.append(
        "| **total** | " + " | ".join(str(sum(res["counts"][s].values())) for s in splits) + " |"
    )
    d, leak = res["duplicates"], res["leakage"]
    return f"""# EDA: {res["root"]}

{res["images"]} images in {len(classes)} classes; analysed in {res["seconds"]} s.

## Images per class and split

{chr(10).join(rows)}

Imbalance ratio (largest / smallest class of the training split): **{res["imbalance_ratio"]}**.

![class counts](class_counts.png)

## Samples

![samples](samples.png)

## Image sizes and colour modes

Sizes (most common): {res["sizes"]}. Modes: {res["modes"]}.

![sizes and modes](sizes_modes.png)

## Exact duplicates (same decoded pixels)

- {d["groups"]} groups, {d["images_in_groups"]} images, {d["redundant_copies"]} redundant copies.
- {d["groups_with_conflicting_labels"]} groups carry conflicting labels.
- Examples: {d["examples"][:5]}

## Leakage between training and held-out splits

- {leak["groups"]} duplicate groups span train and a held-out split;
  {leak["held_out_images_also_in_train"]} held-out images also appear in train.
- Examples: {leak["examples"][:5]}

## Blank or near-constant images (pixel std < {BLANK_STD})

{len(res["blank"])} images: {res["blank"][:20]}

## Unreadable files

{len(res["unreadable"])} files: {res["unreadable"][:20]}

Skipped while scanning: {res["skipped"] or "nothing"}.
"""
