"""In-process pipeline throughput and per-stage milliseconds (decode, detect, crop,
classify), on the fixed image sets of bench/images.py, with the bundled model.

    python -m bench.pipeline [--seconds 10] [--sets single,multi,phone,crops,varied,fixed]
                             [--model-dir D ...]
                             [--runtime openvino --runtime tensorflow] [--threads N]

Per set: images/s, mean ms per stage, and the p50/p90/p99 of whole calls; the varied set
(60 sizes) shows what photos of every size cost. One caller thread, as a library user
would call it; TensorFlow and OpenCV use both
cores inside each call, OpenVINO the threads one worker gets (FER_INFERENCE_THREADS, by
default the cores / FER_WORKERS: 1 here). bench/serve runs the same measurement beside
the served one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

from bench.images import SETS
from bench.loadgen import percentiles
from bench.machine import header
from bench.server import ROOT, YUNET

STAGES = ("decode", "detect", "crop", "classify")


def make_analyzer(
    model_dir: Path = ROOT / "models" / "emotion",
    flip_tta: bool | None = None,
    decode_max_side=None,
    runtime: str | None = None,
    threads: int = 0,
    detector: str | None = None,
    calibration: bool | None = None,
):
    """The service's own Analyzer with the real model and detector, loaded and warm, and
    the service's settings (FER_* variables) unless told otherwise."""
    from service.analyzer import Analyzer
    from service.config import Settings

    settings = Settings.from_env()
    overrides = {
        "model_dir": Path(model_dir),
        "flip_tta": settings.flip_tta if flip_tta is None else flip_tta,
        "runtime": runtime or settings.runtime,
        "inference_threads": threads or settings.inference_threads,
        "detector": detector or settings.detector,
        "calibration": settings.calibration if calibration is None else calibration,
        "yunet_model": str(YUNET) if YUNET.is_file() else "",
        "detector_score": 0.0,
        "batch": False,  # one caller thread: nothing to batch
    }
    if decode_max_side is not None:
        overrides["decode_max_side"] = decode_max_side
    analyzer = Analyzer.from_settings(replace(settings, **overrides))
    analyzer.models.check()
    model = analyzer.models.peek()
    if model is None or not model.ready:
        raise SystemExit(f"model did not load: {analyzer.models.status_error()}")
    return analyzer


def one_thread() -> None:
    """TensorFlow's and OpenCV's thread pools down to one thread (before TensorFlow starts)."""
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def measure(analyzer, bodies: list[bytes], detect: bool, seconds: float) -> dict:
    """Images/s and mean ms per stage over ``seconds`` of back-to-back calls."""
    from service.analyzer import Options
    from service.api.serialize import timings_ms

    opts = Options(detect=detect)
    # Warm the process (first JPEG decode), with an image of the set's first size only:
    # the others' sizes are met in the measured loop, as a service meets them.
    analyzer.analyze(bodies[0], opts)
    timings: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    faces, n = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        analysis = analyzer.analyze(bodies[n % len(bodies)], opts)
        ms = timings_ms(analysis.seconds)  # as /predict reports them
        for stage in timings:
            timings[stage].append(ms[stage])
        faces += len(analysis.faces)
        n += 1
    elapsed = time.perf_counter() - t0
    return {
        "images": n,
        "images_per_s": round(n / elapsed, 2),
        "faces_per_image": round(faces / n, 2),
        **{f"{s}_ms": round(statistics.fmean(v), 2) for s, v in timings.items()},
        **percentiles(timings["total"]),
        "detect_p50_ms": round(statistics.median(timings["detect"]), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="per image set")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--no-tta", action="store_true", help="classify without the flip")
    p.add_argument(
        "--decode-max-side", type=int, default=None, help="default: FER_DECODE_MAX_SIDE's"
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        help="a models/<name> folder (its highest version) or a version folder; repeat it "
        "to compare models set by set, side by side (default: the bundled model)",
    )
    p.add_argument(
        "--runtime",
        action="append",
        metavar="RUNTIME[:DETECTOR]",
        help="auto, openvino or tensorflow, optionally with a FER_DETECTOR value "
        "(tensorflow:yunet-opencv is the service before OpenVINO); repeat it to compare "
        "side by side (default: FER_RUNTIME's and FER_DETECTOR's)",
    )
    p.add_argument("--threads", type=int, default=0, help="OpenVINO threads (0: the service's)")
    p.add_argument(
        "--one-thread",
        action="store_true",
        help="TensorFlow and OpenCV on one thread too (they use every core by default)",
    )
    args = p.parse_args()
    if args.one_thread:
        one_thread()
    dirs = args.model_dir or [ROOT / "models" / "emotion"]
    variants = [(v.split(":") + [None])[:2] for v in args.runtime or [""]]
    analyzers = [
        (
            make_analyzer(d, not args.no_tta, args.decode_max_side, rt or None, args.threads, det),
            det,
        )
        for d in dirs
        for rt, det in variants
    ]
    cols = (
        "images_per_s",
        "faces_per_image",
        *[f"{s}_ms" for s in (*STAGES, "total")],
        "detect_p50_ms",
        "p50_ms",
        "p90_ms",
        "p99_ms",
    )
    first = analyzers[0][0]
    print(header(first.models.current().precision) + f"; detector {first.detector.runtime} "
          f"{first.detector.precision}")  # fmt: skip
    print(f"{'set':8} {'model':>36} " + " ".join(f"{c:>15}" for c in cols))
    for name in args.sets.split(","):
        for analyzer, det in analyzers:
            r = measure(analyzer, SETS[name](), detect=name != "crops", seconds=args.seconds)
            m = analyzer.models.current()
            label = f"v{m.version} {m.runtime} {m.precision}" + (f" {det}" if det else "")
            print(f"{name:8} {label:>36} " + " ".join(f"{r[c]:>15}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
