"""The benchmarks' varied-size photo set and percentiles: what the performance figures of
varied traffic rest on."""

from __future__ import annotations

import io

from PIL import Image

from bench.images import fixed_jpegs, source_photos, varied_jpegs
from bench.loadgen import percentiles


def test_varied_set_is_sixty_sizes_of_twenty_photos_the_same_every_run():
    photos = varied_jpegs()
    assert len(source_photos()) == 20 and len(photos) == 60
    sizes = [Image.open(io.BytesIO(b)).size for b in photos]
    assert len(set(sizes)) == 60  # no two the same: every one a new shape for the detector
    for w, h in sizes:
        assert 240 <= max(w, h) <= 2400 and 0.49 <= w / h <= 2.01
    assert varied_jpegs.__wrapped__(60, 0) == photos  # a fixed seed: the same bytes
    assert {Image.open(io.BytesIO(b)).size for b in fixed_jpegs()} == {(840, 630)}


def test_percentiles_are_nearest_rank():
    ms = [float(i) for i in range(1, 101)]
    assert percentiles(ms) == {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0}
    assert percentiles([7.0]) == {"p50_ms": 7.0, "p90_ms": 7.0, "p99_ms": 7.0}
