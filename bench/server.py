"""Start a real gunicorn (scripts/serve.sh) on 127.0.0.1: for benchmarks and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
YUNET = Path(
    os.environ.get("FER_SHARED", ROOT.parent / "shared"),
    "pretrained",
    "face_detection_yunet_2023mar.onnx",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's worker processes (its children), sorted."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def wait_ready(
    url: str, proc: subprocess.Popen, seconds: float = 120, path: str = "/ready"
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited early"
        try:
            if requests.get(url + path, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or workers still loading (connections queue)
        time.sleep(0.5)
    raise TimeoutError("service not ready in time")


@contextlib.contextmanager
def serve(
    work: Path,
    model_dir: Path = ROOT / "models" / "emotion",
    yunet: Path | None = YUNET,
    workers: int = 2,
    threads: int = 2,
    wait: str = "/ready",
    **env_extra: str,
):
    """Yield (url, process, log path) once ``wait`` answers 200; SIGTERM and wait on exit."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)  # gunicorn's on_starting makes prom/ inside
    log = work / "gunicorn.log"
    env = {
        **os.environ,
        "FER_MODEL_DIR": str(model_dir),
        "FER_BIND": f"127.0.0.1:{port}",
        "FER_WORKERS": str(workers),
        "FER_THREADS": str(threads),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prom"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env_extra,
    }
    if yunet is not None and Path(yunet).is_file():
        env["FER_YUNET_MODEL"] = str(yunet)
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "serve.sh")],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, path=wait)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
