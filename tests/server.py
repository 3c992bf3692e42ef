"""A real gunicorn on 127.0.0.1 for integration, fault and browser tests (bench.server)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from bench.server import (
    free_port,
    log_records,
    serve,
    served_versions,
    wait_every_worker,
    wait_ready,
    worker_pids,
)

__all__ = [
    "free_port",
    "gunicorn",
    "log_records",
    "served_versions",
    "wait_every_worker",
    "wait_ready",
    "wait_until",
    "worker_pids",
]


def wait_until(cond, seconds: float = 90, what: str = "condition") -> None:
    """Poll ``cond`` every half second; fail the test if it stays false."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.contextmanager
def gunicorn(
    model_dir: Path,
    yunet: Path,
    work: Path,
    workers: int = 2,
    wait: str = "/ready",
    **env_extra: str,
):
    """Yield (url, process, log path) once ``wait`` answers 200; SIGTERM and wait on exit."""
    threads = int(env_extra.pop("FER_THREADS", "2"))
    with serve(work, model_dir, yunet, workers, threads, wait, **env_extra) as srv:
        yield srv
