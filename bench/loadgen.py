"""A bounded HTTP load generator: N client threads, each with its own keep-alive session,
posting images for a fixed time. Used by bench/serve and by the fault tests.

Every request is recorded (start, end, status or exception name), so a caller can ask
which requests failed, when, and how.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from dataclasses import dataclass, field

import requests


@dataclass(frozen=True)
class Call:
    start: float
    end: float
    status: int | str  # HTTP status, or the exception's class name

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Load:
    """Runs in the background from ``start()`` until ``stop()`` (or ``duration``)."""

    url: str
    bodies: list[bytes]
    concurrency: int = 4
    duration: float | None = None
    path: str = "/predict"
    timeout: float = 60.0
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _client(self, offset: int) -> None:
        session = requests.Session()
        bodies = itertools.islice(itertools.cycle(self.bodies), offset, None)
        deadline = None if self.duration is None else time.monotonic() + self.duration
        for body in bodies:
            if self._stop.is_set() or (deadline and time.monotonic() >= deadline):
                break
            t0 = time.monotonic()
            try:
                r = session.post(
                    self.url + self.path,
                    data=body,
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=self.timeout,
                )
                r.content  # noqa: B018 - read the whole body before stopping the clock
                status: int | str = r.status_code
            except requests.RequestException as e:
                status = type(e).__name__
                session = requests.Session()  # a broken connection: start a new one
            with self._lock:
                self.calls.append(Call(t0, time.monotonic(), status))

    def start(self) -> Load:
        for i in range(self.concurrency):
            t = threading.Thread(target=self._client, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Call]:
        self._stop.set()
        return self.join()

    def join(self) -> list[Call]:
        for t in self._threads:
            t.join()
        return self.calls

    def run(self) -> list[Call]:
        """Start and wait for ``duration`` to pass."""
        return self.start().join()


def percentiles(ms: list[float], which=(50, 90, 99)) -> dict[str, float]:
    """``p50_ms``, ``p90_ms``, ``p99_ms`` of ``ms`` (nearest rank): the one definition
    every benchmark reports, in process and over HTTP alike."""
    s = sorted(ms)
    return {f"p{q}_ms": round(s[min(len(s) - 1, -(-q * len(s) // 100) - 1)], 2) for q in which}


def summary(calls: list[Call], seconds: float) -> dict:
    """Requests/s, latency percentiles (ms) of the successful calls, errors by kind."""
    ok = sorted(c.seconds * 1000 for c in calls if c.ok)
    errors: dict[str, int] = {}
    for c in calls:
        if not c.ok:
            errors[str(c.status)] = errors.get(str(c.status), 0) + 1

    which = (50, 90, 95, 99)
    return {
        "requests": len(calls),
        "rps": round(len(ok) / seconds, 2) if seconds > 0 else 0.0,
        **(percentiles(ok, which) if ok else {f"p{q}_ms": float("nan") for q in which}),
        "mean_ms": round(statistics.fmean(ok), 1) if ok else float("nan"),
        "errors": errors,
    }
