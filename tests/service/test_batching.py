"""Dynamic batching: concurrent requests share model calls and each gets its own rows."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.model.batching import Batcher
from tests.service.conftest import FakeModel


def faces(level: int, n: int) -> np.ndarray:
    return np.full((n, 48, 48, 3), level, np.uint8)


class SlowModel(FakeModel):
    """A model call that takes a while, so requests pile up behind it."""

    def __init__(self, seconds: float = 0.05):
        super().__init__()
        self.seconds = seconds

    def predict(self, x: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return super().predict(x)


def run_requests(batcher: Batcher, model, jobs: list[np.ndarray]) -> list[np.ndarray]:
    start = threading.Barrier(len(jobs))

    def one(x):
        with batcher.ticket() as t:
            start.wait()
            time.sleep(0.005)  # "decode and detect"
            return t.predict(model, x)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    model = SlowModel()
    batcher = Batcher(max_faces=64, max_wait_ms=100)
    # 16 requests with 1-3 faces each and a brightness that decides the fake's class.
    jobs = [faces(level=(i * 37) % 256, n=1 + i % 3) for i in range(16)]
    results = run_requests(batcher, model, jobs)
    for x, probs in zip(jobs, results, strict=True):
        assert probs.shape == (len(x), 7)
        np.testing.assert_array_equal(probs, FakeModel().predict(x))
    assert sum(len(b) for b in model.batches) == sum(len(x) for x in jobs)
    assert len(model.batches) < len(jobs) / 2, [len(b) for b in model.batches]


def test_a_batch_never_exceeds_max_faces_unless_one_request_does():
    model = SlowModel()
    batcher = Batcher(max_faces=4, max_wait_ms=100)
    jobs = [faces(10 * i, 3) for i in range(6)] + [faces(200, 9)]
    results = run_requests(batcher, model, jobs)
    assert [len(r) for r in results] == [3] * 6 + [9]
    assert all(len(b) <= 4 or len(b) == 9 for b in model.batches)


def test_a_lone_request_does_not_wait_for_others():
    model = FakeModel()
    batcher = Batcher(max_faces=64, max_wait_ms=2000)
    t0 = time.monotonic()
    with batcher.ticket() as t:
        t.predict(model, faces(100, 2))
    # Nothing else in flight: no reason to wait out the 2-s window.
    assert time.monotonic() - t0 < 1.0


def test_a_request_that_ends_early_does_not_hold_back_the_others():
    model = FakeModel()
    batcher = Batcher(max_faces=64, max_wait_ms=2000)
    with batcher.ticket():
        pass  # e.g. a bad image: it never reaches the classifier
    t0 = time.monotonic()
    with batcher.ticket() as t:
        t.predict(model, faces(100, 1))
    assert time.monotonic() - t0 < 1.0


def test_requests_for_different_models_are_not_mixed():
    old, new = SlowModel(), SlowModel()
    batcher = Batcher(max_faces=64, max_wait_ms=100)
    start = threading.Barrier(8)

    def one(i):
        with batcher.ticket() as t:
            start.wait()
            return t.predict(old if i % 2 else new, faces(i * 30, 1))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    assert sum(len(b) for b in old.batches) == 4 and sum(len(b) for b in new.batches) == 4


def test_a_failing_model_call_fails_every_request_in_it():
    class Broken(FakeModel):
        def predict(self, x):
            time.sleep(0.02)
            raise RuntimeError("device lost")

    batcher = Batcher(max_faces=64, max_wait_ms=50)

    def one(_):
        with batcher.ticket() as t:
            with pytest.raises(RuntimeError, match="device lost"):
                t.predict(Broken(), faces(1, 1))
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, range(4)))
    # The collector survives and serves the next request.
    with batcher.ticket() as t:
        assert t.predict(FakeModel(), faces(1, 1)).shape == (1, 7)


def test_the_app_batches_concurrent_requests_when_asked(tmp_path):
    from service.app import create_app
    from service.config import Settings
    from tests.conftest import jpeg_bytes
    from tests.service.conftest import CheckedClient, FakeDetector

    model = SlowModel(0.05)
    settings = Settings.from_env({}, model_dir=tmp_path, json_logs=False, batch=True)
    app = create_app(settings, model=model, detector=FakeDetector())
    app.test_client_class = CheckedClient
    levels = [10 + 30 * i for i in range(8)]

    def one(level):
        img = np.full((48, 48), level, np.uint8)
        r = app.test_client().post(
            "/predict?detect=false", data=jpeg_bytes(img), content_type="image/jpeg"
        )
        return r.json["faces"][0]["emotion"]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, levels))
    expected = [FakeModel().labels[int(FakeModel().predict(faces(v, 1)).argmax())] for v in levels]
    assert got == expected
    assert len(model.batches) < len(levels)
