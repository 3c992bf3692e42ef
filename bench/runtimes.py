"""Runtimes side by side on model versions: milliseconds per call, and whether they
give the answers ``python -m trainer evaluate`` gives.

    python -m bench.runtimes [--model-dir models/emotion/6 ...] [--split test] [--calls 200]

Speed: median ms of one classifier call on a face and its mirror (what the service does
for a one-face photo), alternating between the runtimes (and the versions, when
``--model-dir`` is repeated: their cost side by side, as a ratio to the first) in rounds,
one thread each (TensorFlow's intra- and inter-op pools set to 1). Agreement: every
runtime classifies the FER+ split (default PrivateTest) with flip TTA; the reference is
the trainer's own evaluation path (the SavedModel signature in TensorFlow,
trainer.evaluate). Printed: each runtime's accuracy and macro F1, the largest absolute
difference of any probability from the reference, and how many images changed their top
class.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from bench.images import SHARED
from bench.server import ROOT

RUNTIMES = (("tensorflow", "f32"), ("openvino", "f32"), ("openvino", "bf16"))


def load(model_dir: Path) -> dict:
    from service.model.runtime import make_classifier

    models = {}
    for runtime, precision in RUNTIMES:
        m = make_classifier(model_dir, runtime, precision, threads=1, flip_tta=True)
        if not m.ready:
            raise SystemExit(f"{model_dir} {runtime} {precision}: {m.error}")
        models[f"{runtime} {precision}"] = m
    return models


def print_speed(ms: dict[tuple[Path, str], float], dirs: list[Path]) -> None:
    print("ms per call (a face and its mirror), one thread, median")
    for d in dirs:
        print(f"{d}")
        for runtime, precision in RUNTIMES:
            name = f"{runtime} {precision}"
            v = ms[d, name]
            line = f"  {name:18} {v:7.2f} ms  ({ms[d, 'tensorflow f32'] / v:.1f}x TensorFlow"
            if d != dirs[0]:
                line += f"; {v / ms[dirs[0], name]:.2f}x the cost of {dirs[0]}"
            print(line + ")")


def speed(models: dict, calls: int, rounds: int = 10) -> dict:
    """Median ms per call on one face (+ its mirror), alternating in ``rounds``."""
    rng = np.random.default_rng(0)
    faces = {
        k: rng.integers(0, 256, (1, m.input_size, m.input_size, 3), dtype=np.uint8)
        for k, m in models.items()
    }
    times: dict = {k: [] for k in models}
    for _ in range(rounds):
        for name, m in models.items():
            for _ in range(calls // rounds):
                t = time.perf_counter()
                m.predict(faces[name])
                times[name].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def agreement(models: dict, model_dir: Path, data: Path, split: str) -> None:
    from trainer.data.splits import evaluation_set
    from trainer.evaluate import load_exported, metrics

    ref = load_exported(model_dir)
    es = evaluation_set(
        data,
        ref.contract.input_size,
        labels=data / "ferplus.csv",
        label_column="ferplus_label",
        split=split,
    )
    want = ref.predict(es.images, flip_tta=True)
    rows = {"trainer evaluate (TensorFlow)": want}
    for name, m in models.items():
        rows[name] = np.concatenate(
            [m.predict(es.images[i : i + 64]) for i in range(0, len(es.images), 64)]
        )
    print(f"\n{model_dir}: {len(es.y)} images, flip TTA")
    print(f"{'runtime':32} {'accuracy':>8} {'macro F1':>8} {'max |dp|':>9} {'top changed':>11}")
    for name, probs in rows.items():
        r = metrics(es.y, probs, es.classes)
        changed = int((probs.argmax(1) != want.argmax(1)).sum())
        diff = float(np.abs(probs - want).max())
        print(f"{name:32} {r['accuracy']:>8.4f} {r['macro_f1']:>8.4f} {diff:>9.5f} {changed:>11}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        help="a version folder; repeat it to compare versions' cost side by side "
        "(default: the version models/emotion serves)",
    )
    p.add_argument("--data", type=Path, default=SHARED / "data" / "fer2013")
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--calls", type=int, default=200, help="per runtime and version, for the speed")
    p.add_argument("--skip", choices=("speed", "agreement"), help="run only the other half")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # One thread each, as one worker of two on two cores gets.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from service.model.repository import resolve_version

    served = resolve_version(ROOT / "models" / "emotion")
    dirs = list(dict.fromkeys(args.model_dir or [served]))
    loaded = {d: load(d) for d in dirs}
    if args.skip != "speed":
        both = {(d, name): m for d, models in loaded.items() for name, m in models.items()}
        print_speed(speed(both, args.calls), dirs)
    if args.skip != "agreement":
        for d, models in loaded.items():
            agreement(models, d, args.data, args.split)


if __name__ == "__main__":
    main()
