"""Distillation cost on this machine: the teacher precomputed once, or run on every batch?

Times, on the same batch, one training step of the student (stage 1: base frozen; stage 2:
every layer, as the finetune recipe trains) and one forward pass of the teacher's exported
SavedModel (alone, and with its mirror image as ``distill`` runs it), alternating so that
a busy machine slows both alike, and prints what each choice costs a whole run:

    python scripts/distill_cost.py --teacher models/emotion/6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_into(fn, rounds: list[dict], key: str) -> None:
    t0 = time.perf_counter()
    fn()
    rounds[-1][key] = (time.perf_counter() - t0) * 1000


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


def measure(teacher: Path, batch: int, repeats: int) -> dict:
    """Median milliseconds of each operation on one batch of ``batch`` random faces."""
    import numpy as np

    from trainer.evaluate import load_exported

    exported = load_exported(teacher)
    size = exported.contract.input_size
    n = len(exported.labels)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = rng.dirichlet(np.ones(n), batch).astype(np.float32)
    students = {stage: _student(size, stage, batch, n) for stage in (1, 2)}
    ops = {
        "student_step_stage1": lambda: students[1].train_on_batch(x, y),
        "student_step_stage2": lambda: students[2].train_on_batch(x, y),
        "teacher_forward": lambda: exported.predict(x, batch=batch),
        "teacher_forward_with_mirror": lambda: exported.predict(x, batch=batch, flip_tta=True),
    }
    for fn in ops.values():  # trace and warm up
        fn()
    rounds: list[dict] = []
    for _ in range(repeats):
        rounds.append({})
        for key, fn in ops.items():
            _time_into(fn, rounds, key)
    out = {k: round(statistics.median(r[k] for r in rounds), 1) for k in ops}
    out.update(batch=batch, size=size, repeats=repeats)
    return out


def report(ms: dict, images: int, epochs: int) -> str:
    """What each choice adds to a run of ``epochs`` epochs over ``images`` images."""
    steps = -(-images // ms["batch"])
    ratio = ms["teacher_forward"] / ms["student_step_stage2"]
    online = steps * ms["teacher_forward"] / 1000
    once = steps * ms["teacher_forward_with_mirror"] / 1000
    epoch = steps * ms["student_step_stage2"] / 1000
    return "\n".join(
        [
            json.dumps(ms),
            f"teacher forward / student stage-2 step: {ratio:.2f} "
            f"(stage 1: {ms['teacher_forward'] / ms['student_step_stage1']:.2f})",
            f"a stage-2 epoch of {images} images: {epoch / 60:.1f} min of steps; online, the "
            f"teacher adds {online / 60:.1f} min to every epoch ({online * epochs / 60:.0f} "
            f"min over {epochs} epochs)",
            f"precomputed once, with the mirror image: {once / 60:.1f} min for the whole run",
            "choice: " + ("precomputed" if once < online * epochs else "online"),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="models/<name>/<version>")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="rounds of every timing")
    p.add_argument("--images", type=int, help="training images (default: the teacher's own)")
    p.add_argument("--epochs", type=int, default=26, help="epochs of the planned run")
    args = p.parse_args()
    ms = measure(args.teacher, args.batch, args.repeats)
    from trainer.contract import ModelContract

    dataset = ModelContract.read(args.teacher).details.get("dataset", {})
    images = args.images or dataset.get("images", {}).get("train", 28_000)
    print(report(ms, images, args.epochs))


if __name__ == "__main__":
    main()
