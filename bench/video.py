"""Analysed video frames per second: ours (``service.video``, as /predict/video and the CLI
run it) and the `fer` library's video path (``fer.classes.Video.analyze`` with its
``FER`` detector), side by side on the same clip in one run.

    pip install --no-deps fer==25.10.3 && pip install pandas   # fer.Video imports pandas
    python -m bench.video [--clip clip.mp4] [--seconds 10] [--fps 4] [--rounds 2]

Without ``--clip`` the clip is generated (``bench.videos.crossing_faces``: two faces
crossing, 1280x720, 30 frames/s, MPEG-4 in MP4). Both analyse the same frames: ours
samples ``--fps`` frames per second of video, fer every ``round(video fps / --fps)``-th
frame (its ``frequency``), with its frame, video and image saving turned off (and
OpenCV's window calls, which the headless wheel lacks, stubbed out). Each
round runs both, alternating which goes first, so only the ratio means much on a busy
machine. Ours runs on the service's default threads (one worker's share), fer on what
OpenCV and TFLite take by themselves (both cores here).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from bench.pipeline import make_analyzer
from bench.server import ROOT
from bench.videos import crossing_faces


def ours(clip: Path, fps: float, analyzer) -> dict:
    from service.video.analysis import Limits, VideoAnalysis, VideoOptions

    model = analyzer.models.current()
    t0 = time.perf_counter()
    with VideoAnalysis(clip, analyzer, model, VideoOptions(fps=fps), Limits()) as a:
        frames = list(a.frames())
        tracks = len(a.tracks())
    seconds = time.perf_counter() - t0
    faces = sum(len(f.faces) for f in frames)
    return {"frames": len(frames), "seconds": seconds, "faces": faces, "tracks": tracks}


class _Counted:
    """fer's detector, counting the frames it is given and the faces it finds."""

    def __init__(self, fer):
        self.fer, self.frames, self.faces = fer, 0, 0

    def detect_emotions(self, frame):
        found = self.fer.detect_emotions(frame)
        self.frames += 1
        self.faces += len(found)
        return found

    def __getattr__(self, name):
        return getattr(self.fer, name)


def fer_video(clip: Path, fps: float, fer) -> dict:
    from fer.classes import Video

    cap = cv2.VideoCapture(str(clip))
    every = max(1, round(cap.get(cv2.CAP_PROP_FPS) / fps))
    cap.release()
    detector = _Counted(fer)
    with tempfile.TemporaryDirectory() as out:
        video = Video(str(clip), outdir=out)
        t0 = time.perf_counter()
        video.analyze(
            detector,
            display=False,
            output="pandas",
            frequency=every,
            save_frames=False,
            save_video=False,
            annotate_frames=False,
            zip_images=False,
        )
        seconds = time.perf_counter() - t0
    return {"frames": detector.frames, "seconds": seconds, "faces": detector.faces, "tracks": None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clip", type=Path, help="a video file (default: a generated one)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the generated clip")
    p.add_argument("--fps", type=float, default=4.0, help="frames analysed per second of video")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model-dir", type=Path, default=ROOT / "models" / "emotion")
    p.add_argument(
        "--threads", type=int, default=0, help="ours: inference threads (default: the service's)"
    )
    args = p.parse_args()
    logging.getLogger("fer").setLevel(logging.WARNING)
    # fer.Video calls cv2.waitKey after every frame and cv2.destroyAllWindows at the end,
    # which the headless opencv wheel does not implement (fer declares the GUI build): no-ops
    # here, which spares fer the 1 ms a frame waitKey(1) costs with a GUI.
    cv2.waitKey = lambda *_: -1
    cv2.destroyAllWindows = lambda *_: None
    from fer.fer import FER

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or crossing_faces(
            Path(tmp) / "clip.mp4", args.seconds, fps=30.0, size=(1280, 720)
        )
        cap = cv2.VideoCapture(str(clip))
        info = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        n, rate = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        print(f"clip: {info[0]}x{info[1]}, {n} frames at {rate:g}/s, analysed at {args.fps:g}/s")
        runners = {
            "ours": (ours, make_analyzer(args.model_dir, threads=args.threads)),
            "fer": (fer_video, FER()),
        }
        rows: dict[str, list[dict]] = {k: [] for k in runners}
        for run, obj in runners.values():  # warm-up: first-shape compilation, caches
            run(clip, args.fps, obj)
        for r in range(args.rounds):
            for name in list(runners)[:: 1 if r % 2 == 0 else -1]:
                run, obj = runners[name]
                rows[name].append(run(clip, args.fps, obj))
    print("| library | frames analysed | faces found | tracks | s | analysed frames/s |")
    print("|---|---|---|---|---|---|")
    for name, results in rows.items():
        for res in results:
            rate = res["frames"] / res["seconds"]
            tracks = "-" if res["tracks"] is None else res["tracks"]
            print(
                f"| {name} | {res['frames']} | {res['faces']} | {tracks} | "
                f"{res['seconds']:.2f} | {rate:.1f} |"
            )
    median = {k: statistics.median(r["frames"] / r["seconds"] for r in v) for k, v in rows.items()}
    print(f"\nours / fer, median analysed frames/s: {median['ours'] / median['fer']:.2f}x")


if __name__ == "__main__":
    main()
