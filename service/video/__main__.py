"""``python -m service.video clip.mp4 --csv out.csv [--json out.json] [--plot out.png]``:
the /predict/video analysis without HTTP, with a progress bar, on the served model.

The model, detector and runtime come from the same FER_* settings as the service
(``--model-dir`` and ``--yunet-model`` override two of them); no request limits apply.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from service.analyzer import Analyzer
from service.config import Settings
from service.errors import APIError
from service.model.classifier import Classifier
from service.model.registry import ModelSlot
from service.video import results
from service.video.analysis import Frame, Limits, VideoAnalysis, VideoOptions

PLOT_MAX_TRACKS = 12  # the tracks seen longest; a classroom can have dozens


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m service.video", description=__doc__)
    p.add_argument("video", type=Path)
    p.add_argument("--csv", type=Path, help="one row per face per analysed frame")
    p.add_argument("--json", type=Path, help="the analysis as /predict/video returns it")
    p.add_argument("--plot", type=Path, help="PNG: each track's emotions over time")
    p.add_argument("--fps", type=float, default=4.0, help="frames analysed per second (4)")
    p.add_argument("--start", type=float, default=0.0, help="analyse from this time, s")
    p.add_argument("--end", type=float, default=None, help="analyse up to this time, s")
    p.add_argument("--max-faces", type=int, default=None, help="per frame (FER_MAX_FACES)")
    p.add_argument("--smoothing", type=float, default=0.0, help="per-track average, s (0: off)")
    p.add_argument("--model-dir", type=Path, help="default FER_MODEL_DIR")
    p.add_argument("--yunet-model", help="default FER_YUNET_MODEL")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not (args.csv or args.json or args.plot):
        p.error("say where to write the results: --csv, --json and/or --plot")
    if args.fps <= 0 or (args.end is not None and args.end <= args.start):
        p.error("--fps must be positive and --end after --start")
    return args


def build(settings: Settings) -> tuple[Analyzer, Classifier]:
    """The service's analyzer on the live version of the configured model."""
    # Nothing to batch (one caller). Threads as the CLI always chose them: the detector a
    # worker's share of the cores (threads_per_worker), OpenVINO FER_INFERENCE_THREADS as
    # set (0: OpenVINO's own choice).
    models = ModelSlot.from_settings(settings, threads=settings.inference_threads)
    analyzer = Analyzer.from_settings(replace(settings, batch=False), models)
    analyzer.models.check()
    model = analyzer.models.peek()
    if model is None or not model.ready:
        raise SystemExit(f"the model did not load: {analyzer.models.status_error()}")
    return analyzer, model


def run(a: VideoAnalysis, args: argparse.Namespace, progress: bool = True) -> dict:
    """Analyse, writing the CSV as frames come; the whole analysis as the API's JSON."""
    labels = a.model.labels
    totals, frames = results.Totals(), []
    bar = tqdm(total=a.expected_frames, unit="frame", disable=not progress, file=sys.stderr)
    with bar, _csv(args.csv, labels) as write_row:
        for f in a.frames():
            totals.add(f)
            frames.append(results.frame(f, labels, a.opts.top_k, a.below))
            for row in _rows(f, labels):
                write_row(row)
            bar.update(1)
    return {**results.header(a), "frames": frames, **results.summary(a, totals)}


class _csv:
    """A CSV writer for the rows (or nothing when no path was given)."""

    def __init__(self, path: Path | None, labels: list[str]):
        self.path, self.labels, self.file = path, labels, None

    def __enter__(self):
        if self.path is None:
            return lambda row: None
        self.file = self.path.open("w", newline="")
        out = csv.writer(self.file)
        out.writerow(
            ["time", "frame", "track_id", "x", "y", "width", "height", "emotion", "confidence"]
            + self.labels
            + ["smoothed_emotion"]
        )
        return out.writerow

    def __exit__(self, *exc) -> None:
        if self.file:
            self.file.close()


def _rows(f: Frame, labels: list[str]) -> Iterator[list]:
    for i, b in enumerate(f.faces):
        p = f.probs[i]
        k = int(p.argmax())
        smoothed = labels[int(f.smoothed[i].argmax())] if f.smoothed is not None else ""
        yield [
            f"{f.time:.3f}",
            f.index,
            f.track_ids[i],
            b.x,
            b.y,
            b.width,
            b.height,
            labels[k],
            f"{p[k]:.4f}",
            *(f"{v:.4f}" for v in p),
            smoothed,
        ]


def plot(result: dict, path: Path) -> None:
    """Each track's probabilities over time (smoothed when smoothing was on), one panel
    per track, the longest-seen tracks first."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fer-service[video]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted(result["tracks"], key=lambda t: -t["frames"])[:PLOT_MAX_TRACKS]
    ids = {t["track_id"] for t in tracks}
    series: dict[int, list] = {i: [] for i in ids}
    for f in result["frames"]:
        for face in f["faces"]:
            if face["track_id"] in ids:
                probs = face.get("smoothed", face)["probabilities"]
                series[face["track_id"]].append((f["time"], probs))
    n = max(1, len(tracks))
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.8 * n + 0.6), sharex=True, squeeze=False)
    for ax, t in zip(axes[:, 0], tracks, strict=False):
        points = series[t["track_id"]]
        times = [p[0] for p in points]
        for label in t["mean_probabilities"]:
            ax.plot(times, [p[1][label] for p in points], label=label, marker=".", lw=1)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {t['track_id']}")
        ax.set_title(f"track {t['track_id']}: mostly {t['dominant_emotion']}", fontsize=9)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=7)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None, built: tuple[Analyzer, Classifier] | None = None) -> int:
    """The command; ``built`` is an analyzer and model to use instead of the settings'."""
    args = parse_args(argv)
    overrides = {}
    if args.model_dir:
        overrides["model_dir"] = args.model_dir
    if args.yunet_model:
        overrides["yunet_model"] = args.yunet_model
    settings = Settings.from_env(**overrides)
    analyzer, model = built or build(settings)
    opts = VideoOptions(
        args.fps,
        args.start,
        args.end,
        args.max_faces or settings.max_faces,
        0,
        7,
        args.smoothing,
    )
    try:
        with VideoAnalysis(
            args.video, analyzer, model, opts, Limits(max_pixels=settings.max_pixels)
        ) as a:
            result = run(a, args, progress=not args.no_progress)
    except APIError as e:
        print(f"{args.video}: {e.message}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
    n, t = result["frames_analysed"], len(result["tracks"])
    print(f"{args.video}: {n} frames analysed, {t} tracks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
