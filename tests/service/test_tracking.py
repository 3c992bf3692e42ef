"""The tracker on its own (boxes in, ids out), and on a generated clip of two real faces
crossing, found by the real YuNet detector."""

from __future__ import annotations

import numpy as np
import pytest

from bench.videos import crossing_faces
from service.analyzer import Analyzer
from service.detection import Face, make_detector
from service.model.registry import ModelSlot
from service.video.analysis import Limits, VideoAnalysis, VideoOptions
from service.video.tracking import Smoother, Tracker
from tests.service.conftest import FakeModel


def box(x: float, y: float, side: int = 50) -> Face:
    return Face(round(x), round(y), side, side, 0.9)


def test_faces_crossing_over_each_other_keep_their_ids():
    # Two faces overlapping as they cross: by nearest centre alone, ids would swap at the
    # crossing; the predicted positions keep them.
    tracker = Tracker()
    a_ids, b_ids = set(), set()
    for i in range(12):
        a, b = box(30 * i, 0), box(330 - 30 * i, 12)
        ids = tracker.update([b, a], i * 0.25)  # the detector's order means nothing
        b_ids.add(ids[0])
        a_ids.add(ids[1])
    assert a_ids == {1} or a_ids == {2}
    assert len(a_ids | b_ids) == 2


def test_a_track_survives_max_missed_frames_then_ends():
    tracker = Tracker(max_missed=2)
    assert tracker.update([box(0, 0)], 0.0) == [1]
    tracker.update([], 0.25)
    tracker.update([], 0.5)
    assert tracker.update([box(20, 0)], 0.75) == [1]  # two misses: same id
    for t in (1.0, 1.25, 1.5):
        tracker.update([], t)
    assert tracker.update([box(20, 0)], 1.75) == [2]  # three: a new id


def test_a_box_far_away_or_of_another_size_is_another_face():
    tracker = Tracker()
    assert tracker.update([box(0, 0)], 0.0) == [1]
    assert tracker.update([box(200, 0)], 0.25) == [2]  # 4 face widths away
    assert tracker.update([box(200, 0, side=150)], 0.5) == [3]  # 3 times the size


def test_smoother_averages_over_its_time_constant():
    p0, p1 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    off = Smoother(0.0)
    assert off(1, 0.0, p0) is p0 and off(1, 1.0, p1) is p1
    s = Smoother(1.0)
    s(1, 0.0, p0)
    np.testing.assert_allclose(s(1, 1.0, p1), [np.exp(-1), 1 - np.exp(-1)])
    np.testing.assert_allclose(s(2, 1.0, p1), p1)  # each track on its own


@pytest.mark.shared
def test_two_real_faces_crossing_are_two_tracks_from_start_to_end(yunet_path, tmp_path):
    clip = crossing_faces(tmp_path / "cross.mp4", seconds=3.0)
    detector = make_detector("yunet-opencv", str(yunet_path), 0, 640)
    model = FakeModel()
    analyzer = Analyzer(ModelSlot.fixed(model), detector, 40_000_000)
    with VideoAnalysis(clip, analyzer, model, VideoOptions(fps=5), Limits()) as a:
        frames = list(a.frames())
        tracks = a.tracks()
    assert len(frames) == 15
    assert [t.frames for t in tracks] == [15, 15]
    for t in tracks:
        xs = [f.faces[f.track_ids.index(t.id)].x for f in frames]
        steps = np.sign(np.diff(xs))
        assert abs(steps.sum()) == len(steps)  # always the same direction: never swapped
