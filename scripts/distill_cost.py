"""Distillation cost on this machine: the teacher cached once, or run on every batch?

Times, on the same batch, one training step of the student (stage 1: base frozen; stage 2:
every layer, as the finetune recipe trains) and one pass of the teacher: through its
SavedModel signature in TensorFlow (what ``--teacher-mode cached`` runs once per training
image) and through OpenVINO (what ``--teacher-mode online`` runs on every batch, with the
label mix), each alone and with the mirror image, alternating so that a busy machine
slows all of them alike. Then the student's real input pipeline and ``fit`` for
``--pipeline-steps`` batches: without a teacher, and with the online one on 1 OpenVINO
thread and on every core (it runs in the input pipeline, beside TensorFlow's training
step, so its cost there is not simply its time alone). Prints what each choice costs an epoch and
a run:

    python scripts/distill_cost.py --teacher models/emotion/6

(any version folder; version 6, three networks, is in git history since #32:
`git checkout 0ae6460 -- models/emotion/6`)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rounds(ops: dict, repeats: int) -> dict[str, list[float]]:
    """Milliseconds of each operation in ``repeats`` rounds that call each once, starting
    from the next one each round: a load that comes and goes slows all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in ops}
    keys = list(ops)
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            ops[key]()
            times[key].append((time.perf_counter() - t0) * 1000)
    return times


def _median_ms(ops: dict, repeats: int) -> dict:
    """Median milliseconds of each operation (``_rounds``)."""
    return {k: round(statistics.median(v), 1) for k, v in _rounds(ops, repeats).items()}


def _student(size: int, stage: int, batch: int, classes: int):
    from trainer.config import make_config
    from trainer.loop import compile_for_stage
    from trainer.model import build_model, set_stage

    # The finetune recipe (stage 2 trains every layer, BatchNorm updated); random initial
    # weights cost the same compute as ImageNet's.
    cfg = make_config("finetune", input_size=size, base_weights="none", batch_size=batch)
    model, base = build_model(cfg, classes)
    set_stage(base, stage, cfg)
    compile_for_stage(model, cfg, stage, steps=100)
    return model


def _online(infer, teacher: Path, tta: bool):
    """The online mode's per-batch work: the OpenVINO teacher (``infer``) and the mix."""
    from trainer.config import TrainConfig
    from trainer.distillation.distill import online_targets

    return online_targets([(infer, 0.5)], TrainConfig(teacher=(str(teacher),), teacher_tta=tta))


def measure(teacher: Path, batch: int, repeats: int, pipeline_steps: int) -> dict:
    """Median milliseconds of each operation on one batch of ``batch`` random faces, and
    per batch of the input pipeline and ``fit`` with and without the online teacher."""
    import numpy as np

    from trainer.distillation.teacher_runtime import THREADS, load_teacher
    from trainer.evaluate import load_exported

    exported = load_exported(teacher)
    size, n = exported.contract.input_size, len(exported.labels)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = rng.dirichlet(np.ones(n), batch).astype(np.float32)
    students = {stage: _student(size, stage, batch, n) for stage in (1, 2)}
    # One OpenVINO model per thread setting (0: one thread per core), the trainer's among them.
    ov = {t: load_teacher(teacher, exported.contract, threads=t) for t in {1, 0, THREADS}}
    alone, mirrored = (_online(ov[THREADS].infer, teacher, tta) for tta in (False, True))
    ops = {
        "student_step_stage1": lambda: students[1].train_on_batch(x, y),
        "student_step_stage2": lambda: students[2].train_on_batch(x, y),
        "tf_teacher": lambda: exported.predict(x, batch=batch),
        "tf_teacher_with_mirror": lambda: exported.predict(x, batch=batch, flip_tta=True),
        "openvino_teacher": lambda: alone(x, y),
        "openvino_teacher_with_mirror": lambda: mirrored(x, y),
    }
    _median_ms(ops, 1)  # trace and warm up
    out = _median_ms(ops, repeats)
    if pipeline_steps:
        online = {
            "online_1_thread": _online(ov[1].infer, teacher, True),
            f"online_{ov[0].threads}_threads_every_core": _online(ov[0].infer, teacher, True),
        }
        out["pipeline"] = _pipeline(online, size, students[2], pipeline_steps, y, repeats)
    out.update(batch=batch, size=size, repeats=repeats, openvino_threads=ov[THREADS].threads)
    return out


def _pipeline(online: dict, size: int, student, steps: int, y, repeats: int) -> dict:
    """A stage-2 ``fit`` over ``steps`` batches of the finetune recipe's augmented pipeline:
    no teacher, and the online one (with its mirror) for each OpenVINO setting in
    ``online``. Milliseconds per batch (medians), and each setting's time over the one
    without a teacher in the same round (median of the rounds' ratios)."""
    import numpy as np

    from trainer.config import make_config
    from trainer.data.input_pipeline import train_dataset
    from trainer.data.splits import Split
    from trainer.model import augmentation

    batch = len(y)
    cfg = make_config("finetune", input_size=size, base_weights="none", batch_size=batch)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (steps * batch, size, size, 3), dtype=np.uint8)
    split = Split(images, np.zeros(len(images), np.int32), np.tile(y, (steps, 1)), [])
    aug = augmentation(cfg, cfg.seed)
    variants = {"no_teacher": None, **online}

    def epoch(targets):
        student.fit(train_dataset(split, batch, 0, aug, None, targets), epochs=1, verbose=0)

    ops = {k: (lambda t=t: epoch(t)) for k, t in variants.items()}
    _rounds(ops, 1)  # trace and warm up
    times = _rounds(ops, repeats)
    base = times.pop("no_teacher")
    return {
        "ms_per_batch_no_teacher": round(statistics.median(base) / steps, 1),
        **{f"ms_per_batch_{k}": round(statistics.median(v) / steps, 1) for k, v in times.items()},
        **{
            f"ratio_{k}": round(statistics.median([a / b for a, b in zip(v, base, strict=True)]), 3)
            for k, v in times.items()
        },
    }


def report(ms: dict, images: int, epochs: int) -> str:
    """What each choice adds to an epoch of ``images`` images and to a run of ``epochs``."""
    steps = -(-images // ms["batch"])
    step = ms["student_step_stage2"]

    def minutes(per_batch_ms: float) -> str:
        return f"{steps * per_batch_ms / 60_000:.1f} min"

    lines = [json.dumps(ms), f"per batch of {ms['batch']}, against a student stage-2 step:"]
    for key in ("tf_teacher", "openvino_teacher"):
        for k in (key, f"{key}_with_mirror"):
            lines.append(f"  {k}: {ms[k] / step:.2f}x ({minutes(ms[k])} per epoch)")
    speedup = ms["tf_teacher_with_mirror"] / ms["openvino_teacher_with_mirror"]
    lines += [
        f"OpenVINO runs the teacher with its mirror {speedup:.1f}x faster than TensorFlow",
        f"an epoch of {images} images: {minutes(step)} of student steps; online with the "
        f"mirror, TensorFlow adds {ms['tf_teacher_with_mirror'] / step:.0%}, OpenVINO "
        f"{ms['openvino_teacher_with_mirror'] / step:.0%} (run one after the other)",
        f"cached (TensorFlow, with the mirror, once): {minutes(ms['tf_teacher_with_mirror'])} "
        f"for the whole run of {epochs} epochs",
    ]
    if pipe := ms.get("pipeline"):
        lines.append("in the input pipeline and fit, online with the mirror, per epoch:")
        for k, v in pipe.items():
            if k.startswith("ratio_"):
                lines.append(f"  {k.removeprefix('ratio_')}: {v - 1:+.0%} over no teacher")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="models/<name>/<version>")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="rounds of every timing")
    p.add_argument("--images", type=int, help="training images (default: the teacher's own)")
    p.add_argument("--epochs", type=int, default=26, help="epochs of the planned run")
    p.add_argument(
        "--pipeline-steps", type=int, default=12, help="batches per timed fit (0: skip it)"
    )
    args = p.parse_args()
    ms = measure(args.teacher, args.batch, args.repeats, args.pipeline_steps)
    from trainer.contract import ModelContract

    dataset = ModelContract.read(args.teacher).details.get("dataset", {})
    images = args.images or dataset.get("images", {}).get("train", 28_000)
    print(report(ms, images, args.epochs))


if __name__ == "__main__":
    main()
