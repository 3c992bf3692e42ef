"""``python -m trainer {eda,train,distill,evaluate,ensemble,adjust,candidate,calibrate}``:
arguments and error reporting."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from trainer.config import RECIPES, TEACHER_MODES, TEACHER_VIEWS, TrainConfig
from trainer.errors import TrainerError

F = TrainConfig.__dataclass_fields__
FLAGS: dict[str, str] = {}  # TrainConfig field -> its option, for messages


def _opt(p: argparse.ArgumentParser, flag: str, field: str, help: str, **kw) -> None:
    """An option that overrides a recipe field; None (unset) keeps the recipe's value."""
    typ = kw.pop("type", type(F[field].default) if F[field].default is not None else str)
    FLAGS[field] = flag
    p.add_argument(flag, dest=field, default=None, type=typ, help=help, **kw)


def _flag(p: argparse.ArgumentParser, name: str, field: str, help: str) -> None:
    FLAGS[field] = f"--{name}"
    p.add_argument(
        f"--{name}", dest=field, default=None, action=argparse.BooleanOptionalAction, help=help
    )


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="where models/<name>/<version>/ is written",
    )
    p.add_argument("--version", type=int, help="version number (default: next free)")


def _training_options(p: argparse.ArgumentParser) -> None:
    """The options of ``train``; ``distill`` has them all too (its student trains alike)."""
    p.add_argument(
        "data", nargs="?", help="dataset root: ROOT/<class>/* or ROOT/{train,test}/<class>/*"
    )
    p.add_argument(
        "--recipe",
        default=None,  # unset: finetune, and a resumed run's own
        choices=sorted(RECIPES),
        help="'notebook' reproduces the original recipe; 'finetune' (if unset) is ours",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="folder for checkpoints and logs (default runs/<name>-<time>)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last completed epoch, with the options it "
        "started with (other values given here are refused)",
    )
    _output_args(p)
    p.add_argument(
        "--logical-cpus",
        type=int,
        default=0,
        help="split the CPU into N logical devices (to try --distribute here)",
    )
    _opt(p, "--labels", "labels", "CSV label file (column 'file' relative to DATA)", type=str)
    _opt(p, "--label-column", "label_column", "CSV column with the hard label")
    _flag(p, "soft-labels", "soft_labels", "train on the CSV's vote distribution (FER+)")
    _opt(p, "--min-votes", "min_votes", "drop vote counts below this (annotator noise)")
    _opt(p, "--name", "name", "model name")
    _opt(p, "--input-size", "input_size", "square input size in pixels")
    _opt(p, "--alpha", "alpha", "MobileNetV2 width multiplier")
    _opt(p, "--base-weights", "base_weights", "ImageNet .h5 path, 'imagenet' (download) or 'none'")
    _opt(p, "--val-fraction", "val_fraction", "validation share when the data has no val split")
    _opt(p, "--seed", "seed", "random seed (split, shuffling, augmentation, init)")
    _flag(p, "drop-duplicates", "drop_duplicates", "drop exact duplicate images (no leaks)")
    _flag(p, "drop-blank", "drop_blank", "drop blank or near-constant images")
    _opt(p, "--batch-size", "batch_size", "batch size")
    _opt(p, "--rotation", "rotation", "augmentation: max rotation in degrees (0 = off)")
    _opt(p, "--shift", "shift", "augmentation: max width/height shift fraction")
    _opt(p, "--shear", "shear", "augmentation: max shear fraction")
    _opt(p, "--zoom", "zoom", "augmentation: max zoom fraction")
    _flag(p, "flip", "flip", "augmentation: random horizontal flip")
    _opt(p, "--erasing", "erasing", "augmentation: probability of erasing a random patch")
    _opt(p, "--class-weight", "class_weight", "class weights", choices=["balanced", "sqrt", "none"])
    _opt(p, "--dropout", "dropout", "dropout before the classifier")
    _opt(p, "--stage1-epochs", "stage1_epochs", "epochs with the base frozen")
    _opt(p, "--stage1-lr", "stage1_lr", "stage 1 learning rate")
    _opt(p, "--stage2-epochs", "stage2_epochs", "fine-tuning epochs")
    _opt(p, "--stage2-lr", "stage2_lr", "stage 2 learning rate")
    _opt(p, "--unfreeze", "unfreeze", "stage 2: last N base layers trainable, 0 = all")
    _opt(p, "--bn", "bn_mode", "BatchNorm in stage 2", choices=["frozen", "train"])
    _opt(
        p,
        "--lr-schedule",
        "lr_schedule",
        "learning-rate schedule",
        choices=["constant", "cosine", "plateau"],
    )
    _opt(p, "--early-stopping", "early_stopping", "stage 2 patience on val loss, 0 = off")
    _opt(
        p,
        "--keep",
        "keep",
        "which weights to export: best (lowest val loss against the labels) or last (the "
        "last epoch's); a resumed run may change it; best if unset",
        choices=["best", "last"],
    )
    _opt(p, "--label-smoothing", "label_smoothing", "label smoothing")
    _opt(p, "--distribute", "distribute", "data parallel training", choices=["none", "mirrored"])
    _opt(
        p,
        "--init-from",
        "init_from",
        "start from an exported model version's weights (models/<name>/<v>) instead of "
        "ImageNet's: a warm restart or a fine-tune on new data",
        type=str,
    )
    _opt(p, "--max-bad", "max_bad", "unreadable images tolerated before stopping")
    _appearance_options(p)


# Appearance augmentation, off (0) in both recipes; definitions in trainer/appearance.py.
APPEARANCE = [  # flag, TrainConfig field, metavar, help
    ("--brightness", "brightness", "F", "brightness shift up to +-F of 0..255"),
    ("--contrast", "contrast", "F", "contrast factor in [1-F, 1+F]"),
    ("--gamma", "gamma", "G", "gamma log-uniform in [1/(1+G), 1+G]"),
    ("--blur", "blur", "P", "probability of a Gaussian blur, sigma up to 1.5 px at 48 px"),
    ("--low-res", "low_res", "P", "probability of a rescale through 24 px..input size"),
    ("--noise", "noise", "STD", "gray Gaussian noise of std up to STD pixel values"),
]


def _appearance_options(p: argparse.ArgumentParser) -> None:
    for flag, field, metavar, text in APPEARANCE:
        _opt(p, flag, field, f"augmentation: {text}", metavar=metavar)


def _train_parser(sub) -> None:
    p = _command(sub, "train", "fine-tune MobileNetV2 and export a model version")
    _training_options(p)


def _distill_parser(sub) -> None:
    p = _command(
        sub, "distill", "train a student on a teacher version's probabilities mixed with the labels"
    )
    _training_options(p)
    teacher = "models/<name>/<v> | MODEL.onnx"
    what = (
        "a teacher to learn from, repeatable: an exported version, or an ONNX expression "
        "model run on faces aligned on YuNet's landmarks (trainer/distillation/face_teacher.py)"
    )
    _opt(p, "--teacher", "teacher", what, type=str, metavar=teacher, action="append")
    share = "each teacher's share of the train target, in --teacher order; 0.5 if one is unset"
    _opt(p, "--teacher-weight", "teacher_weight", share, metavar="W", type=float, action="append")
    soft = "soften the teacher: p**(1/T) renormalised; 1 if unset"
    _opt(p, "--temperature", "temperature", soft, metavar="T")
    _flag(p, "teacher-tta", "teacher_tta", "average the teacher with the mirror image; on if unset")
    modes = (
        "cached: the teacher once per clean training image (TensorFlow), kept in the run "
        "folder; online: on every augmented batch, on the student's very images (OpenVINO); "
        "cached if unset"
    )
    _opt(p, "--teacher-mode", "teacher_mode", modes, choices=TEACHER_MODES)
    views = (
        "online, what the teacher is shown: augmented, the student's very image; framed, "
        "the same crop (flip, rotation, shift, shear, zoom) before the appearance changes and "
        "erasing, so the student learns the clean face's answer on a degraded one; "
        "augmented if unset"
    )
    _opt(p, "--teacher-view", "teacher_view", views, choices=TEACHER_VIEWS)
    yunet = "an ONNX teacher's face detector; unset: the YuNet file beside the teacher"
    _opt(p, "--yunet", "yunet", yunet, metavar="PATH")
    cache = (
        "folder where an ONNX teacher's outputs are cached by image, kept between runs "
        "(and in git: data/teacher-cache); unset: the run folder"
    )
    _opt(p, "--teacher-cache", "teacher_cache", cache, metavar="DIR")


def _eval_parser(sub) -> None:
    p = _command(sub, "evaluate", "metrics of an exported model on a dataset")
    p.add_argument("model_dir", type=Path, help="models/<name>/<version>")
    p.add_argument("data", type=Path, help="dataset root in a supported layout")
    p.add_argument("--labels", type=Path, help="CSV label file instead of folder names")
    p.add_argument("--label-column", default="label", help="CSV column with the label")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        help="only this split (folders train/val/test or the CSV usage column)",
    )
    p.add_argument(
        "--exclude-duplicates-of",
        type=Path,
        metavar="DIR",
        help="leave out images whose pixels also appear under DIR",
    )
    p.add_argument("--drop-blank", action="store_true", help="leave out blank images")
    p.add_argument(
        "--tta",
        choices=["none", "flip"],
        default="none",
        help="test-time augmentation: average with the mirrored face",
    )
    p.add_argument("--out", type=Path, help="write JSON, Markdown and confusion figure here")
    p.add_argument("--title", default="", help="report title (names the output files)")


def _ensemble_parser(sub) -> None:
    p = _command(sub, "ensemble", "export the mean of exported versions as a new version")
    p.add_argument("members", type=Path, nargs="+", help="models/<name>/<version> folders")
    _output_args(p)


def _adjust_parser(sub) -> None:
    p = _command(
        sub, "adjust", "export a version with per-class prior offsets tuned on its validation split"
    )
    p.add_argument("model_dir", type=Path, help="models/<name>/<version>, a trained version")
    _output_args(p)
    p.add_argument(
        "--objective",
        choices=["accuracy", "macro_f1"],
        default="accuracy",
        help="what the offsets maximise on the validation split (flip TTA)",
    )
    p.add_argument(
        "--range", dest="bound", type=float, default=2.0, metavar="R", help="offsets in [-R, R]"
    )
    p.add_argument("--step", type=float, default=0.1, help="grid step of the offsets")
    p.add_argument("--rounds", type=int, default=4, help="coordinate-ascent rounds")
    p.add_argument(
        "--also",
        default="",
        metavar="CROPS.npz",
        help="a second validation set the offsets are chosen on too: face crops saved by "
        "python -m bench.cross_dataset --crops (tw-posed, faces FER2013 never showed)",
    )
    p.add_argument(
        "--also-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="--also's share of the objective; the validation split gets 1 - W",
    )


def _candidate_parser(sub) -> None:
    p = _command(
        sub,
        "candidate",
        "keep a trained version a later session will go on from: its weights in float16 "
        "(--init-from takes the folder)",
    )
    p.add_argument("model_dir", type=Path, help="models/<name>/<version>, a trained version")
    p.add_argument("--out", type=Path, required=True, help="models/candidates/<name>")


def _calibrate_parser(sub) -> None:
    p = _command(
        sub,
        "calibrate",
        "fit an exported version's calibration (temperature, uncertain threshold) on its "
        "validation split, in place; every export does this itself",
    )
    p.add_argument("model_dir", type=Path, help="models/<name>/<version>, a trained version")


def _eda_parser(sub) -> None:
    p = _command(sub, "eda", "exploratory data analysis report")
    p.add_argument("data", type=Path, help="dataset root in a supported layout")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--labels", type=Path, help="CSV label file instead of folder names")
    p.add_argument("--label-column", default="label", help="CSV column with the label")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    _eda_parser(sub)
    _train_parser(sub)
    _distill_parser(sub)
    _eval_parser(sub)
    _ensemble_parser(sub)
    _adjust_parser(sub)
    _candidate_parser(sub)
    _calibrate_parser(sub)
    return p


def _split_cpu(n: int) -> None:
    import tensorflow as tf

    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n
        )


def _train(args) -> None:
    """``train`` and ``distill``: one workflow; a distill run's config names its teacher."""
    from trainer.config import make_config
    from trainer.workflow import train_and_export

    _split_cpu(args.logical_cpus)
    if args.resume:
        _check_resume(args)
        if args.keep is not None:
            from trainer.run_folder import change_keep

            change_keep(args.resume, args.keep)
        train_and_export(None, args.resume, args.models_dir, args.version)
        return
    if not args.data:
        raise TrainerError(f"{args.command} needs DATA (or --resume RUN_DIR)")
    if args.command == "distill" and not args.teacher:
        raise TrainerError("distill needs --teacher models/<name>/<version>")
    names = set(F) - {"recipe", "data"}
    overrides = {k: getattr(args, k) for k in names if hasattr(args, k)}
    cfg = make_config(args.recipe or "finetune", data=args.data, **overrides)
    import time

    run_dir = args.run_dir or Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    train_and_export(cfg, run_dir, args.models_dir, args.version)


def _check_resume(args) -> None:
    """A resumed run keeps the options it started with (its config.json's): one run, one
    recipe. An option given again with the same value is fine (a script that always passes
    them); a different value is refused, not silently ignored."""
    from trainer.run_folder import saved_config

    cfg = saved_config(args.resume)
    if cfg is None:
        return  # not a run folder: the workflow says so, with the path
    if args.command == "distill" and not cfg.teacher:
        # Resuming a train run with distill would silently train without a teacher.
        raise TrainerError(
            f"{args.resume} is a train run, not a distill run: resume it with train --resume"
        )
    if args.run_dir is not None and Path(args.run_dir).resolve() != args.resume.resolve():
        raise TrainerError(
            f"--run-dir {args.run_dir} is not the resumed run {args.resume}: a resumed run "
            f"stays in its own folder (leave out --run-dir)"
        )
    changed = []
    if args.data is not None and not _same("data", args.data, cfg.data):
        changed.append(f"DATA {args.data} (the run's: {cfg.data})")
    if args.recipe is not None and args.recipe != cfg.recipe:
        changed.append(f"--recipe {args.recipe} (the run's: {cfg.recipe})")
    for field, flag in FLAGS.items():
        if field in RESUME_MAY_CHANGE:
            continue
        given, saved = getattr(args, field, None), getattr(cfg, field)
        if given is not None and not _same(field, given, saved):
            theirs = _spelled(flag, saved) if isinstance(saved, bool | tuple) else saved
            changed.append(f"{_spelled(flag, given)} (the run's: {theirs})")
    if changed:
        raise TrainerError(
            f"{args.resume} was started with other options; a resumed run keeps its own "
            f"(leave these out, or start a new run): " + "; ".join(changed)
        )


# What a resumed run may change: it decides which weights are exported, not what is trained.
RESUME_MAY_CHANGE = {"keep"}
PATHS = {
    "data",
    "labels",
    "init_from",
    "teacher",
    "base_weights",
    "yunet",
    "teacher_cache",
}  # fields naming files


def _same(field: str, given, saved) -> bool:
    # A path is the same file however it is spelled (relative, with ./, absolute), from
    # the folder the run is resumed in.
    if isinstance(saved, tuple):  # the teachers and their weights, one by one
        given = tuple(given)
        return len(given) == len(saved) and all(
            _same(field, g, s) for g, s in zip(given, saved, strict=True)
        )
    if given == saved:
        return True
    paths = field in PATHS and isinstance(saved, str) and saved not in ("imagenet", "none")
    return paths and Path(given).resolve() == Path(saved).resolve()


def _spelled(flag: str, value) -> str:
    """How an option with ``value`` is written: a yes/no flag as --x or --no-x."""
    if isinstance(value, bool):
        return flag if value else f"--no-{flag.removeprefix('--')}"
    if isinstance(value, list | tuple):
        return " ".join(f"{flag} {v}" for v in value) or f"no {flag}"
    return f"{flag} {value}"


def _evaluate(args) -> None:
    from trainer.workflow import evaluate_command

    res = evaluate_command(
        args.model_dir,
        args.data,
        labels=args.labels,
        label_column=args.label_column,
        split=None if args.split in (None, "all") else args.split,
        exclude_duplicates_of=args.exclude_duplicates_of,
        drop_blank=args.drop_blank,
        flip_tta=args.tta == "flip",
        out=args.out,
        title=args.title,
    )
    summary = {k: res[k] for k in ("model", "split", "images", "accuracy", "macro_f1", "dropped")}
    summary["recall"] = {k: v["recall"] for k, v in res["per_class"].items()}
    summary["calibration"] = res["calibration"]
    print(json.dumps(summary, indent=2))


def _ensemble(args) -> None:
    from trainer.workflow import ensemble_and_export

    ensemble_and_export(args.members, args.models_dir, args.version)


def _adjust(args) -> None:
    from trainer.adjust import Search
    from trainer.workflow import adjust_and_export

    search = Search(args.objective, args.bound, args.step, args.rounds, args.also, args.also_weight)
    adjust_and_export(args.model_dir, args.models_dir, search, args.version)


def _candidate(args) -> None:
    from trainer.candidate import save_candidate

    out = save_candidate(args.model_dir, args.out)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB): --init-from {out} goes on from it")


def _calibrate(args) -> None:
    from trainer.report import calibration_table
    from trainer.workflow import calibrate_command

    cal = calibrate_command(args.model_dir)
    print(
        f"{args.model_dir}: temperature {cal['temperature']:g}, uncertain below "
        f"{cal['uncertain_below']:g} (coverage {cal['coverage']:.1%} on the validation split)"
    )
    print(calibration_table(cal["scores"]))


def _eda(args) -> None:
    from trainer.eda import run_eda

    path = run_eda(args.data, args.out, args.labels, args.label_column)
    print(f"wrote {path}")


COMMANDS = {
    "eda": _eda,
    "train": _train,
    "distill": _train,
    "evaluate": _evaluate,
    "ensemble": _ensemble,
    "adjust": _adjust,
    "candidate": _candidate,
    "calibrate": _calibrate,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        COMMANDS[args.command](args)
    except TrainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        resumable = args.command in ("train", "distill")
        print("interrupted" + ("; resume with --resume RUN_DIR" * resumable), file=sys.stderr)
        return 130
    return 0
