"""Dynamic batching: faces from concurrent requests of one worker share one model call.

A request takes a ticket when it starts (``with batcher.ticket() as t``), hands its faces
to ``t.predict`` once they are cropped, and blocks. One collector
thread takes the oldest waiting request and, while other requests of this worker are
still on their way to the classifier (decoding, detecting), waits up to ``max_wait_ms``
for them, up to ``max_faces`` faces in all. Then one model call, and each request gets
its rows back. A request alone in the worker is never delayed: with nothing else in
flight there is nothing to wait for. Batch shapes stay within the model's padded bucket
sizes, so nothing retraces.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future

import numpy as np

from service import metrics
from service.model.classifier import Classifier


class _Job:
    __slots__ = ("model", "faces", "future")

    def __init__(self, model: Classifier, faces: np.ndarray):
        self.model, self.faces = model, faces
        self.future: Future[np.ndarray] = Future()


class _Ticket:
    """One request's place in the batcher's count of requests still on their way."""

    def __init__(self, batcher: Batcher):
        self.batcher, self.upstream = batcher, False

    def __enter__(self) -> _Ticket:
        self.batcher._arrive(+1)
        self.upstream = True
        return self

    def predict(self, model: Classifier, faces: np.ndarray) -> np.ndarray:
        job = _Job(model, faces)
        self.batcher._submit(job)
        self.upstream = False
        return job.future.result()

    def __exit__(self, *exc) -> None:
        if self.upstream:  # ended (error, no face) without reaching the classifier
            self.batcher._arrive(-1)
            self.upstream = False


class Unbatched:
    """The ticket when batching is off: each request calls the model by itself."""

    def __enter__(self) -> Unbatched:
        return self

    def predict(self, model: Classifier, faces: np.ndarray) -> np.ndarray:
        return model.predict(faces)

    def __exit__(self, *exc) -> None:
        pass


class Batcher:
    """Collects faces from request threads into shared model calls."""

    def __init__(self, max_faces: int = 32, max_wait_ms: float = 5.0):
        self.max_faces = max_faces
        self.max_wait = max_wait_ms / 1000.0
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._upstream = 0  # requests started but not yet queued for the classifier
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def ticket(self) -> _Ticket:
        """Taken by a request when it starts (``with batcher.ticket() as t``): while it
        decodes and detects, the collector knows more faces may be coming."""
        return _Ticket(self)

    def _submit(self, job: _Job) -> None:
        with self._cond:
            self._queue.append(job)
            self._upstream -= 1  # queued now, no longer on its way
            self._cond.notify_all()

    def _arrive(self, delta: int) -> None:
        with self._cond:
            self._upstream += delta
            self._cond.notify_all()

    def _take(self) -> list[_Job]:
        """Block for the next batch: same model, at most max_faces, waiting while it pays."""
        with self._cond:
            while not self._queue:
                self._cond.wait()
            deadline = time.monotonic() + self.max_wait
            while True:
                queued = sum(len(j.faces) for j in self._queue)
                left = deadline - time.monotonic()
                if queued >= self.max_faces or self._upstream <= 0 or left <= 0:
                    break
                self._cond.wait(left)
            first = self._queue[0].model
            batch: list[_Job] = []
            n = 0
            while self._queue and self._queue[0].model is first:
                job = self._queue[0]
                if batch and n + len(job.faces) > self.max_faces:
                    break
                batch.append(self._queue.popleft())
                n += len(job.faces)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                faces = np.concatenate([j.faces for j in batch])
                probs = batch[0].model.predict(faces)
            except BaseException as e:  # noqa: BLE001 - every waiting request gets the error
                for j in batch:
                    j.future.set_exception(e)
                continue
            metrics.BATCH_REQUESTS.observe(len(batch))
            start = 0
            for j in batch:
                j.future.set_result(probs[start : start + len(j.faces)])
                start += len(j.faces)
