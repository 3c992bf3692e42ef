"""Start a real gunicorn (scripts/serve.sh) on 127.0.0.1 for integration and browser tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited early"
        try:
            if requests.get(url + "/ready", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or workers still loading (connections queue)
        time.sleep(0.5)
    raise TimeoutError("service not ready in time")


@contextlib.contextmanager
def gunicorn(model_dir: Path, yunet: Path, work: Path, workers: int = 2, **env_extra):
    """Yield (url, process, log path); SIGTERM and wait on exit."""
    port = free_port()
    (work / "prom").mkdir(parents=True, exist_ok=True)
    log = work / "gunicorn.log"
    env = {
        **os.environ,
        "FER_MODEL_DIR": str(model_dir),
        "FER_BIND": f"127.0.0.1:{port}",
        "FER_WORKERS": str(workers),
        "FER_THREADS": "2",
        "FER_YUNET_MODEL": str(yunet),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prom"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env_extra,
    }
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "serve.sh")],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
