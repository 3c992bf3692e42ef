"""A video analysis as the API returns it (JSON, or NDJSON lines) and the CLI writes it.

Each face of a frame has /predict's shape (service.api.serialize), with its track id.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from service.analyzer import FaceResult
from service.api import serialize
from service.model.calibration import uncertain
from service.video.analysis import Frame, TrackSummary, VideoAnalysis

STAGES = ("decode", "detect", "crop", "classify", "track")


def header(a: VideoAnalysis) -> dict:
    """What is known before the first frame: the video, the window, the settings."""
    info = a.info
    return {
        "video": {
            "width": info.width,
            "height": info.height,
            "fps": serialize.fps(info.fps),
            "frame_count": info.frame_count,
            "duration": serialize.seconds(info.duration),
        },
        "window": {"start": serialize.seconds(a.start), "end": serialize.seconds(a.end)},
        "fps": a.opts.fps,
        "smoothing": a.opts.smoothing,
        "model": serialize.model(a.model.name, a.model.version, a.model.calibration is not None),
        "uncertain_below": a.below,
        "detector": a.analyzer.detector.name,
    }


def frame(f: Frame, labels: list[str], top_k: int, below: float | None = None) -> dict:
    """One analysed frame: its number, time and faces with their track ids (each face
    uncertain under the threshold ``below``, before and after smoothing)."""
    faces = []
    for i, box in enumerate(f.faces):
        face = serialize.face(FaceResult.of(box, f.probs[i]), labels, top_k, below)
        entry = {"track_id": f.track_ids[i], **face}
        if f.smoothed is not None:
            entry["smoothed"] = _label(f.smoothed[i], labels, below)
        faces.append(entry)
    return {"index": f.index, "time": serialize.seconds(f.time), "faces": faces}


def _label(p: np.ndarray, labels: list[str], below: float | None) -> dict:
    k = int(np.argmax(p))
    return {
        "emotion": labels[k],
        "confidence": serialize.probability(p[k]),
        "uncertain": uncertain(float(p[k]), below),
        "probabilities": serialize.probabilities(p, labels),
    }


def track(t: TrackSummary, labels: list[str]) -> dict:
    """One track over the whole analysis, with its emotion timeline as time spans."""
    mean = t.mean
    return {
        "track_id": t.id,
        "first_time": serialize.seconds(t.first_time),
        "last_time": serialize.seconds(t.last_time),
        "frames": t.frames,
        "dominant_emotion": labels[int(np.argmax(mean))],
        "mean_probabilities": serialize.probabilities(mean, labels),
        "timeline": [
            {
                "start": serialize.seconds(start),
                "end": serialize.seconds(end),
                "emotion": labels[k],
                "uncertain": unsure,
            }
            for start, end, k, unsure in t.timeline
        ],
    }


class Totals:
    """Per-stage time summed over the analysed frames."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.frames = 0

    def add(self, f: Frame) -> None:
        self.frames += 1
        for k, v in f.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v

    def timings_ms(self) -> dict:
        return serialize.timings_ms(self.seconds)


def summary(a: VideoAnalysis, totals: Totals) -> dict:
    """What is known after the last frame: counts, per-track summaries, timings."""
    labels = a.model.labels
    return {
        "frames_analysed": totals.frames,
        "truncated": a.truncated,
        "tracks": [track(t, labels) for t in a.tracks()],
        "timings_ms": totals.timings_ms(),
    }


def whole(a: VideoAnalysis, frames: Iterable[Frame]) -> dict:
    """The whole analysis as one JSON object (runs it)."""
    totals, out = Totals(), []
    for f in frames:
        totals.add(f)
        out.append(frame(f, a.model.labels, a.opts.top_k, a.below))
    return {**header(a), "frames": out, **summary(a, totals)}
