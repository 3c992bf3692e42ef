"""The commands behind the CLI: train-and-export, and evaluate an exported model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer import figures, report
from trainer.config import TrainConfig
from trainer.data import load_dataset
from trainer.distill import check_teacher, distill_targets
from trainer.ensemble import Ensemble, member_summary, read_members
from trainer.errors import DataError
from trainer.evaluate import Exported, load_exported, markdown_table, metrics
from trainer.export import base_metadata, export, next_version
from trainer.images import BLANK_STD, decode_all
from trainer.splits import Prepared, class_weights
from trainer.train import fit, open_run, prepare_run, run_revisions


def train_and_export(
    cfg: TrainConfig | None, run_dir: Path, models_dir: Path, version: int | None = None
) -> Path:
    """Train (or resume, when ``cfg`` is None) in ``run_dir`` and export a new version.

    With ``cfg.teacher`` set this is distillation: the same training, with the train
    split's targets mixed from the labels and the teacher's outputs (trainer/distill.py).
    """
    new_run = cfg is not None
    cfg = cfg or open_run(run_dir, None)
    prep = prepare_run(cfg)
    teacher = check_teacher(cfg, prep.classes) if cfg.teacher else None
    if new_run:  # only once the data and the teacher are known to be usable
        open_run(run_dir, cfg)
    _print_data_summary(prep, cfg)
    distilled = distill_targets(cfg, teacher, run_dir, prep.splits["train"]) if teacher else None
    model = fit(cfg, run_dir, prep)
    state = json.loads((run_dir / "state.json").read_text())
    figures.training_curves(state["history"], run_dir / "training_curves.png")
    version = version or next_version(models_dir, cfg.name)
    meta = base_metadata(cfg.name, version, prep.classes, cfg.input_size)
    meta.update(
        training=json.loads(cfg.to_json()),
        history=state["history"],
        best_epoch=state["best_epoch"],
        stopped_early=state["stopped_early"],
        base_weights=Path(cfg.base_weights).name,
        dataset=_data_meta(prep),
        train_seconds=round(sum(h.get("seconds", 0) for h in state["history"])),
    )
    if revisions := run_revisions(run_dir):
        meta["training_code_revisions"] = revisions
    if cfg.init_from:
        meta["init"] = _init_meta(Path(cfg.init_from))
    if distilled:
        meta["distillation"] = distilled
    meta["metrics"] = {}

    def finish(exported: Exported, folder: Path) -> None:
        _measure(exported, prep, meta, folder)
        curves = run_dir / "training_curves.png"
        if curves.exists():
            (folder / curves.name).write_bytes(curves.read_bytes())
        (folder / "MODEL_CARD.md").write_text(report.model_card(meta))

    sample = prep.splits["val"].images[:8]
    final = export(model, models_dir, meta, sample, finish)
    print(f"exported {final}", flush=True)
    return final


def ensemble_and_export(folders: list[Path], models_dir: Path, version: int | None = None) -> Path:
    """Export the mean of exported versions as a new version, measured like a trained one."""
    metas = read_members(folders)
    first = metas[0]
    cfg = TrainConfig.from_json(json.dumps(first["training"]))
    prep = prepare_run(cfg)  # the members' own splits: validation figures stay comparable
    if prep.fingerprint != first["dataset"]["fingerprint"]:
        raise DataError(f"{cfg.data} has changed since the members were trained")
    name = first["name"]
    version = version or next_version(models_dir, name)
    members = [member_summary(f, m) for f, m in zip(folders, metas, strict=True)]
    meta = base_metadata(name, version, first["labels"], int(first["input"]["shape"][1]))
    meta.update(
        ensemble={"combine": "mean of the members' probabilities", "members": members},
        dataset=first["dataset"],
        train_seconds=_lineage_seconds(folders, metas),
        metrics={},
    )

    def finish(exported: Exported, folder: Path) -> None:
        _measure(exported, prep, meta, folder)
        (folder / "MODEL_CARD.md").write_text(report.ensemble_card(meta))

    model = Ensemble(folders, metas)
    final = export(model, models_dir, meta, prep.splits["val"].images[:8], finish)
    print(f"exported {final}", flush=True)
    return final


def _lineage_seconds(folders: list[Path], metas: list[dict]) -> int:
    """Training time of every member and of what they started from, each counted once."""
    own = {str(f.resolve()): m.get("train_seconds", 0) for f, m in zip(folders, metas, strict=True)}
    for m in metas:
        init = m.get("init")
        if init and str(Path(init["folder"]).resolve()) not in own:
            own[str(Path(init["folder"]).resolve())] = init.get("total_train_seconds", 0)
    return round(sum(own.values()))


def _measure(exported: Exported, prep: Prepared, meta: dict, folder: Path) -> None:
    """Validation and test metrics of the reloaded export, with confusion figures."""
    for name in ("val", "test"):
        if name in prep.splits:
            split = prep.splits[name]
            res = metrics(split.labels, exported.predict(split.images), prep.classes)
            meta["metrics"][name] = res
            figures.confusion(
                res["confusion"], prep.classes, folder / f"confusion_{name}.png", f"{name} split"
            )


def _init_meta(folder: Path) -> dict:
    """What a warm-started model started from, so its card can give the whole history."""
    init = json.loads((folder / "metadata.json").read_text())
    seconds = init.get("train_seconds", 0) + init.get("init", {}).get("total_train_seconds", 0)
    return {
        "folder": str(folder),
        "name": init.get("name"),
        "version": init.get("version"),
        "code_revision": init.get("code_revision"),
        "train_seconds": init.get("train_seconds", 0),
        "total_train_seconds": seconds,  # including what that model started from
        "training": init.get("training", {}),
    }


def _data_meta(prep: Prepared) -> dict:
    return {
        "fingerprint": prep.fingerprint,
        "images": {k: len(v) for k, v in prep.splits.items()},
        "per_class": {
            k: np.bincount(v.labels, minlength=len(prep.classes)).tolist()
            for k, v in prep.splits.items()
        },
        "dropped": dict(prep.dropped),
        "skipped": prep.skipped,
        "unreadable": prep.unreadable[:50],
    }


def _print_data_summary(prep: Prepared, cfg: TrainConfig) -> None:
    for name, split in prep.splits.items():
        counts = np.bincount(split.labels, minlength=len(prep.classes))
        print(
            f"{name}: {len(split)} images  "
            + "  ".join(f"{c}={n}" for c, n in zip(prep.classes, counts, strict=True))
        )
    if prep.dropped:
        print("dropped: " + ", ".join(f"{k}={v}" for k, v in prep.dropped.items() if v))
    for line in prep.unreadable[:20]:
        print(f"skipped unreadable image {line}")
    w = class_weights(prep.splits["train"].labels, len(prep.classes), cfg.class_weight)
    if w:
        print(
            "class weights ("
            + cfg.class_weight
            + "): "
            + ", ".join(f"{c}={w[i]:.2f}" for i, c in enumerate(prep.classes))
        )


def evaluate_command(
    model_dir: Path,
    data: Path,
    *,
    labels: Path | None = None,
    label_column: str = "label",
    split: str | None = None,
    exclude_duplicates_of: Path | None = None,
    drop_blank: bool = False,
    flip_tta: bool = False,
    out: Path | None = None,
    title: str = "",
) -> dict:
    """Metrics of the exported model on ``data`` (optionally one split, de-duplicated)."""
    exported = load_exported(model_dir)
    es = evaluation_set(
        data,
        int(exported.metadata["input"]["shape"][1]),
        labels=labels,
        label_column=label_column,
        split=split,
        exclude_duplicates_of=exclude_duplicates_of,
        drop_blank=drop_blank,
    )
    _check_same_classes(es.classes, exported.labels)
    probs = exported.predict(es.images, flip_tta=flip_tta)
    res = metrics(es.y, probs, exported.labels)
    res.update(
        dropped=es.dropped,
        flip_tta=flip_tta,
        data=str(data),
        split=split or "all",
        model=f"{exported.metadata['name']}/{exported.metadata['version']}",
    )
    if out is not None:
        _write_eval(res, exported.labels, out, title or f"{data.name} {split or 'all'}")
    return res


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


def _check_same_classes(classes: list[str], labels: list[str]) -> None:
    if classes != labels:
        raise DataError(f"the data's classes {classes} differ from the model's {labels}")


def _write_eval(res: dict, labels: list[str], out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "_" for c in title).strip("_").lower()
    (out / f"{slug}.json").write_text(json.dumps(res, indent=2) + "\n")
    figures.confusion(res["confusion"], labels, out / f"{slug}_confusion.png", title)
    md = (
        f"## {title}\n\n{res['images']} images, accuracy {res['accuracy']:.4f}, macro F1 "
        f"{res['macro_f1']:.4f}, flip TTA {'on' if res['flip_tta'] else 'off'}; dropped "
        f"{res['dropped']}\n\n{markdown_table(res, labels)}\n"
    )
    (out / f"{slug}.md").write_text(md)
