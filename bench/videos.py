"""Short generated video clips for the benchmarks and the tests (never committed).

- ``crossing_faces``: two copies of scikit-image's astronaut face (one mirrored) moving
  across a plain background in opposite directions, crossing in the middle: what a real
  detector (YuNet) finds and a tracker must keep apart;
- ``blobs``: bright squares on black, whose brightness the tests' fake model reads as an
  emotion and whose boxes the tests' fake detector finds: moving, crossing, leaving.

Every writer is OpenCV's ``VideoWriter``; which containers it can write here: MJPG in
AVI or MKV, mp4v in MP4 or MOV, VP8/VP9 in WebM (H.264 needs an encoder the opencv
wheel does not ship; its FFmpeg decodes H.264 all the same).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.images import astronaut

FOURCC = {".avi": "MJPG", ".mkv": "MJPG", ".mp4": "mp4v", ".mov": "mp4v", ".webm": "VP80"}


def write(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """RGB frames as a video; the codec follows the file's extension (``FOURCC``)."""
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, (w, h))
    if not out.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} here")
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    return path


def face_patch(height: int = 132) -> np.ndarray:
    """The astronaut's head and shoulders, ``height`` pixels tall (YuNet finds it)."""
    patch = astronaut()[20:240, 130:300]
    width = round(patch.shape[1] * height / patch.shape[0])
    return cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Mover:
    """A patch whose top-left corner moves linearly from ``a`` to ``b`` over the clip."""

    patch: np.ndarray
    a: tuple[int, int]
    b: tuple[int, int]

    def at(self, u: float) -> tuple[int, int]:
        return round(self.a[0] + (self.b[0] - self.a[0]) * u), round(
            self.a[1] + (self.b[1] - self.a[1]) * u
        )


def render(
    movers: list[Mover], n: int, size: tuple[int, int], background: int | np.ndarray = 0
) -> list[np.ndarray]:
    """``n`` frames of ``size`` (w, h) with each mover pasted at its place (later on top)."""
    w, h = size
    frames = []
    for i in range(n):
        u = i / max(1, n - 1)
        frame = np.empty((h, w, 3), np.uint8)
        frame[:] = background
        for m in movers:
            x, y = m.at(u)
            ph, pw = m.patch.shape[:2]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
            if x1 > x0 and y1 > y0:
                frame[y0:y1, x0:x1] = m.patch[y0 - y : y1 - y, x0 - x : x1 - x]
        frames.append(frame)
    return frames


def crossing_faces(
    path: Path, seconds: float = 4.0, fps: float = 15.0, size: tuple[int, int] = (640, 360)
) -> Path:
    """Two faces crossing: one left to right along the top, one right to left below it."""
    w, h = size
    face = face_patch(round(h * 0.37))
    fw, fh = face.shape[1], face.shape[0]
    movers = [
        Mover(face, (10, round(h * 0.08)), (w - fw - 10, round(h * 0.08))),
        Mover(face[:, ::-1].copy(), (w - fw - 10, h - fh - 10), (10, h - fh - 10)),
    ]
    frames = render(movers, round(seconds * fps), size, background=(200, 205, 210))
    return write(path, frames, fps)


def blob(level: int, side: int = 60) -> np.ndarray:
    return np.full((side, side, 3), level, np.uint8)


def blobs(
    path: Path,
    movers: list[Mover],
    seconds: float = 3.0,
    fps: float = 10.0,
    size: tuple[int, int] = (320, 240),
    change: Callable[[int, list[np.ndarray]], None] | None = None,
) -> Path:
    """Bright squares moving on black; ``change(i, frames)`` may edit the frames after."""
    frames = render(movers, round(seconds * fps), size)
    if change:
        for i in range(len(frames)):
            change(i, frames)
    return write(path, frames, fps)
