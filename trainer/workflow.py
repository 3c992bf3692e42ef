"""The commands behind the CLI: train (or distill) and export, ensemble and export, adjust
and export, and evaluate an exported model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainer import calibration, figures, report, run_folder
from trainer.adjust import PriorAdjusted, Search, read_source, tune
from trainer.config import TrainConfig
from trainer.contract import ModelContract
from trainer.data.splits import Prepared, class_weights, evaluation_set, prepare_run
from trainer.distillation.distill import distill, open_teachers
from trainer.ensemble import Ensemble, member_summary, read_members
from trainer.errors import DataError
from trainer.evaluate import Exported, load_exported, markdown_table, metrics
from trainer.export import Finish, base_contract, export, next_version
from trainer.loop import fit


def train_and_export(
    cfg: TrainConfig | None, run_dir: Path, models_dir: Path, version: int | None = None
) -> Path:
    """Train (or resume, when ``cfg`` is None) in ``run_dir`` and export a new version.

    With ``cfg.teacher`` set this is distillation: the same training, with the train
    targets mixed from the labels and the teachers' outputs, computed once per image or,
    online, on every augmented batch (trainer/distillation/distill.py).
    """
    new_run = cfg is not None
    cfg = cfg or run_folder.open_run(run_dir, None)
    prep = prepare_run(cfg)
    teachers = open_teachers(cfg, prep.classes) if cfg.teacher else None
    if new_run:  # only once the data and the teacher are known to be usable
        run_folder.open_run(run_dir, cfg)
    _print_data_summary(prep, cfg)
    distilled = distill(cfg, teachers, run_dir, prep) if teachers else None
    model, state = fit(cfg, run_dir, prep, distilled.batch_targets if distilled else None)
    curves = run_dir / run_folder.CURVES
    figures.training_curves(state["history"], curves)
    version = version or next_version(models_dir, cfg.name)
    contract = base_contract(cfg.name, version, prep.classes, cfg.input_size).with_details(
        training=json.loads(cfg.to_json()),
        history=state["history"],
        best_epoch=state["best_epoch"],
        exported_epoch=list(state["exported_epoch"]) if state["exported_epoch"] else None,
        stopped_early=state["stopped_early"],
        base_weights=Path(cfg.base_weights).name,
        dataset=_data_meta(prep),
        train_seconds=round(sum(h.get("seconds", 0) for h in state["history"])),
    )
    if revisions := run_folder.run_revisions(run_dir):
        contract = contract.with_details(training_code_revisions=revisions)
    if cfg.init_from:
        contract = contract.with_details(init=_init_meta(Path(cfg.init_from)))
    if distilled:
        contract = contract.with_details(distillation=distilled.details)

    sample = prep.splits["val"].images[:8]
    finish = _finisher(prep, report.model_card, curves)
    final = export(model, models_dir, contract.with_details(metrics={}), sample, finish)
    print(f"exported {final}", flush=True)
    return final


def ensemble_and_export(folders: list[Path], models_dir: Path, version: int | None = None) -> Path:
    """Export the mean of exported versions as a new version, measured like a trained one."""
    contracts = read_members(folders)
    first = contracts[0]
    prep = _trained_splits(first, "the members were")
    version = version or next_version(models_dir, first.name)
    members = [member_summary(f, c) for f, c in zip(folders, contracts, strict=True)]
    contract = base_contract(first.name, version, first.labels, first.input_size).with_details(
        ensemble={"combine": "mean of the members' probabilities", "members": members},
        dataset=first.details["dataset"],
        train_seconds=_lineage_seconds(folders, contracts),
        metrics={},
    )

    model = Ensemble(folders, contracts)
    finish = _finisher(prep, report.ensemble_card)
    final = export(model, models_dir, contract, prep.splits["val"].images[:8], finish)
    print(f"exported {final}", flush=True)
    return final


def adjust_and_export(
    folder: Path, models_dir: Path, search: Search, version: int | None = None
) -> Path:
    """Export ``folder``'s version with class offsets tuned on its validation split, measured
    like a trained version and carrying the source's details (its data, recipe, history)."""
    source = read_source(folder)
    prep = _trained_splits(source, "the source was")
    tuning = tune(load_exported(folder), prep.splits["val"], search)  # not the test split
    version = version or next_version(models_dir, source.name)
    contract = base_contract(source.name, version, source.labels, source.input_size)
    per_export = {*contract.details, "metrics", "export_check_max_diff"}
    inherited = {k: v for k, v in source.details.items() if k not in per_export}
    adjustment = tuning.describe(folder, source, search)
    print(f"{folder}, offsets tuned for {search.objective}:", flush=True)
    print(report.adjustment_summary(adjustment), flush=True)
    contract = contract.with_details(**inherited, adjustment=adjustment, metrics={})
    model = PriorAdjusted(folder, source, tuning.offsets)
    finish = _finisher(prep, report.model_card, folder / run_folder.CURVES)
    final = export(model, models_dir, contract, prep.splits["val"].images[:8], finish)
    print(f"exported {final}", flush=True)
    return final


def _trained_splits(contract: ModelContract, whose: str) -> Prepared:
    """The splits a trained version was measured on, rebuilt from its training options, so
    that what is made from it is measured on the same images (``whose``: for the message)."""
    cfg = TrainConfig.from_json(json.dumps(contract.details["training"]))
    prep = prepare_run(cfg)
    if prep.fingerprint != contract.details["dataset"]["fingerprint"]:
        raise DataError(f"{cfg.data} has changed since {whose} trained")
    return prep


def _finisher(
    prep: Prepared, card: Callable[[ModelContract], str], curves: Path | None = None
) -> Finish:
    """What export runs on the reloaded export: its metrics, its card and, if there are
    any, the training curves."""

    def finish(exported: Exported, folder: Path) -> ModelContract:
        measured = _measure(exported, prep, folder)
        if "val" in prep.splits:  # every version gets its calibration, as it is exported
            measured = measured.with_details(calibration=calibrate(exported, prep, folder))
        if curves is not None and curves.exists():
            shutil.copyfile(curves, folder / curves.name)
        (folder / "MODEL_CARD.md").write_text(card(measured))
        return measured

    return finish


def _lineage_seconds(folders: list[Path], contracts: list[ModelContract]) -> int:
    """Training time of every member and of what they started from, each counted once."""
    own = {
        str(f.resolve()): c.details.get("train_seconds", 0)
        for f, c in zip(folders, contracts, strict=True)
    }
    for c in contracts:
        init = c.details.get("init")
        if init and str(Path(init["folder"]).resolve()) not in own:
            own[str(Path(init["folder"]).resolve())] = init.get("total_train_seconds", 0)
    return round(sum(own.values()))


def _measure(exported: Exported, prep: Prepared, folder: Path) -> ModelContract:
    """The reloaded export's contract with its validation and test metrics added; writes
    their confusion figures into ``folder``."""
    results = dict(exported.contract.metrics)
    for name in ("val", "test"):
        if name in prep.splits:
            split = prep.splits[name]
            res = metrics(split.labels, exported.predict(split.images), prep.classes)
            results[name] = res
            figures.confusion(
                res["confusion"], prep.classes, folder / f"confusion_{name}.png", f"{name} split"
            )
    return exported.contract.with_details(metrics=results)


def calibrate(exported: Exported, prep: Prepared, folder: Path) -> dict:
    """The version's calibration: temperature and uncertain threshold fitted on the
    validation split with flip TTA (as the service answers), never on the test split;
    scored before and after on both, with a reliability diagram each in ``folder``."""
    val = prep.splits["val"]
    probs = exported.predict(val.images, flip_tta=True)
    fitted_on = {"split": "val", "images": len(val), "flip_tta": True}
    cal = calibration.calibrate(probs, val.labels, fitted_on)
    t = cal["temperature"]
    _reliability(probs, val.labels, t, folder / "reliability_val.png", "val split")
    if "test" in prep.splits:
        test = prep.splits["test"]
        probs = exported.predict(test.images, flip_tta=True)
        cal["scores"]["test"] = calibration.before_after(
            probs, test.labels, t, cal["uncertain_below"]
        )
        _reliability(probs, test.labels, t, folder / "reliability_test.png", "test split")
    return cal


def _reliability(probs: np.ndarray, y: np.ndarray, t: float | None, path: Path, title: str) -> None:
    """Reliability diagrams of ``probs`` and, with a temperature, of them calibrated."""
    curves = {"before" if t else "as served": calibration.reliability(probs, y)}
    if t:
        curves[f"after (T = {t:g})"] = calibration.reliability(calibration.temper(probs, t), y)
    figures.reliability(curves, path, title)


def calibrate_command(folder: Path) -> dict:
    """Fit the calibration of an exported version that has none (or refit it), in place:
    its metadata, reliability diagrams and the card's calibration section. The version's
    network is untouched; the service applies the calibration when it next loads it."""
    exported = load_exported(folder)
    prep = _trained_splits(exported.contract, "the version was")
    cal = calibrate(exported, prep, folder)
    exported.contract.with_details(calibration=cal).write(folder)
    card = folder / "MODEL_CARD.md"
    if card.is_file():
        card.write_text(report.with_calibration_section(card.read_text(), cal))
    return cal


def _init_meta(folder: Path) -> dict:
    """What a warm-started model started from, so its card can give the whole history."""
    init = ModelContract.read(folder)
    own = init.details.get("train_seconds", 0)
    seconds = own + init.details.get("init", {}).get("total_train_seconds", 0)
    return {
        "folder": str(folder),
        "name": init.name,
        "version": init.version,
        "code_revision": init.details.get("code_revision"),
        "train_seconds": own,
        "total_train_seconds": seconds,  # including what that model started from
        "training": init.details.get("training", {}),
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
        exported.contract.input_size,
        labels=labels,
        label_column=label_column,
        split=split,
        exclude_duplicates_of=exclude_duplicates_of,
        drop_blank=drop_blank,
    )
    _check_same_classes(es.classes, exported.labels)
    probs = exported.predict(es.images, flip_tta=flip_tta)
    res = metrics(es.y, probs, exported.labels)
    cal = exported.contract.details.get("calibration")
    temperature: float | None = cal["temperature"] if cal else None
    if cal and temperature:
        below = cal.get("uncertain_below")
        res["calibration"] = {"temperature": temperature} | calibration.before_after(
            probs, es.y, temperature, below
        )
    else:
        res["calibration"] = {"temperature": None, "before": calibration.scores(probs, es.y)}
    res.update(
        dropped=es.dropped,
        flip_tta=flip_tta,
        data=str(data),
        split=split or "all",
        model=f"{exported.contract.name}/{exported.contract.version}",
    )
    if out is not None:
        title = title or f"{data.name} {split or 'all'}"
        _write_eval(res, exported.labels, out, title)
        _reliability(probs, es.y, temperature, out / f"reliability_{_slug(title)}.png", title)
    return res


def _check_same_classes(classes: list[str], labels: list[str]) -> None:
    if classes != labels:
        raise DataError(f"the data's classes {classes} differ from the model's {labels}")


def _write_eval(res: dict, labels: list[str], out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    slug = _slug(title)
    (out / f"{slug}.json").write_text(json.dumps(res, indent=2) + "\n")
    figures.confusion(res["confusion"], labels, out / f"{slug}_confusion.png", title)
    md = (
        f"## {title}\n\n{res['images']} images, accuracy {res['accuracy']:.4f}, macro F1 "
        f"{res['macro_f1']:.4f}, flip TTA {'on' if res['flip_tta'] else 'off'}; dropped "
        f"{res['dropped']}\n\n{markdown_table(res, labels)}\n\n"
        f"{report.calibration_table(res['calibration'])}\n\n"
        f"![reliability](reliability_{slug}.png)\n"
    )
    (out / f"{slug}.md").write_text(md)


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in title).strip("_").lower()
