"""Give each face a track id that stays the same from one analysed video frame to the next.

Tracking by detection: every analysed frame's detector boxes are matched to the live
tracks greedily, closest first. A track's box is predicted at the frame's time from its
last box and velocity (faces that cross keep their ids), and a box may match it only if
its centre is within ``gate`` face-widths of the prediction (wider for every frame the
track was missed) and its size within a factor 2. Centre distance rather than IoU,
because at a few sampled frames per second a moving face often does not overlap its
previous box at all. A track missed in more than ``max_missed`` analysed frames in a row
ends; a face that comes back later gets a new id.

Written here rather than taken from a tracking library: norfair pins numpy below 2,
trackers pulls in opencv-python 5 beside our headless 4.x, and supervision's ByteTrack
brings PyAV, matplotlib and scipy into the CPU service for what is a few dozen lines on
the handful of faces a frame holds (docs/video.md, "Tracking").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from service.detection import Face


@dataclass
class Track:
    """One face followed over time; ``box`` is its last matched box."""

    id: int
    box: Face
    time: float  # when ``box`` was seen, s
    velocity: tuple[float, float] = (0.0, 0.0)  # centre, pixels per second
    missed: int = 0  # analysed frames in a row without a match
    hits: int = 1

    def predicted_centre(self, t: float) -> tuple[float, float]:
        cx, cy = _centre(self.box)
        dt = t - self.time
        return cx + self.velocity[0] * dt, cy + self.velocity[1] * dt


@dataclass
class Tracker:
    """Assigns track ids to each frame's boxes (``update``); one tracker per video."""

    max_missed: int = 2  # analysed frames a track survives without a match
    gate: float = 1.5  # largest centre distance to the prediction, in face widths
    next_id: int = 1
    tracks: list[Track] = field(default_factory=list)

    def update(self, boxes: list[Face], t: float) -> list[int]:
        """Track ids for ``boxes`` (same order), seen at time ``t`` seconds."""
        ids = [0] * len(boxes)
        free_tracks, free_boxes = set(range(len(self.tracks))), set(range(len(boxes)))
        for _dist, ti, bi in sorted(self._candidates(boxes, t)):
            if ti in free_tracks and bi in free_boxes:
                free_tracks.discard(ti)
                free_boxes.discard(bi)
                ids[bi] = self._follow(self.tracks[ti], boxes[bi], t)
        for ti in free_tracks:
            self.tracks[ti].missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.max_missed]
        for bi in sorted(free_boxes):
            ids[bi] = self._start(boxes[bi], t)
        return ids

    def _candidates(self, boxes: list[Face], t: float) -> list[tuple[float, int, int]]:
        out = []
        for ti, tr in enumerate(self.tracks):
            px, py = tr.predicted_centre(t)
            for bi, b in enumerate(boxes):
                side = math.sqrt(tr.box.area)
                ratio = math.sqrt(b.area) / side
                if not 0.5 <= ratio <= 2.0:
                    continue
                bx, by = _centre(b)
                dist = math.hypot(bx - px, by - py) / side
                if dist <= self.gate * (1 + tr.missed):
                    out.append((dist, ti, bi))
        return out

    def _follow(self, tr: Track, box: Face, t: float) -> int:
        dt = t - tr.time
        if dt > 0:
            (ox, oy), (nx, ny) = _centre(tr.box), _centre(box)
            measured = ((nx - ox) / dt, (ny - oy) / dt)
            # Smoothed, so one jittery box does not throw the next prediction off.
            k = 0.5 if tr.hits > 1 else 1.0
            tr.velocity = (
                (1 - k) * tr.velocity[0] + k * measured[0],
                (1 - k) * tr.velocity[1] + k * measured[1],
            )
        tr.box, tr.time, tr.missed, tr.hits = box, t, 0, tr.hits + 1
        return tr.id

    def _start(self, box: Face, t: float) -> int:
        track = Track(self.next_id, box, t)
        self.next_id += 1
        self.tracks.append(track)
        return track.id


def _centre(b: Face) -> tuple[float, float]:
    return b.x + b.width / 2, b.y + b.height / 2


class Smoother:
    """Exponential moving average of each track's probabilities with time constant ``tau``
    seconds (0: off), so one odd frame does not flip a person's label."""

    def __init__(self, tau: float):
        self.tau = tau
        self._state: dict[int, tuple[float, np.ndarray]] = {}

    def __call__(self, track_id: int, t: float, probs: np.ndarray) -> np.ndarray:
        last = self._state.get(track_id)
        if self.tau <= 0 or last is None:
            out = probs
        else:
            weight = 1.0 - math.exp(-max(0.0, t - last[0]) / self.tau)
            out = last[1] + weight * (probs - last[1])
        self._state[track_id] = (t, out)
        return out
