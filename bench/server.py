"""Start a real gunicorn (scripts/serve.sh) on 127.0.0.1: for benchmarks and the tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
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


def log_records(log: Path, message: str | None = None) -> list[dict]:
    """The service's JSON log lines (gunicorn's own plain lines skipped), optionally one
    message only."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if message is None or rec.get("message") == message:
                out.append(rec)
    return out


def served_versions(master: int, log: Path) -> dict[int, str | None]:
    """Each live worker's model version, from its latest "model version live" log line;
    None for a worker that has loaded none yet."""
    latest = {rec["pid"]: rec["version"] for rec in log_records(log, "model version live")}
    return {pid: latest.get(pid) for pid in worker_pids(master)}


def wait_every_worker(
    proc: subprocess.Popen, log: Path, version: str | None = None, seconds: float = 120
) -> None:
    """Wait until every worker serves ``version`` (any version when None), read from the
    JSON log. One worker's 200 on /ready says nothing of the others: the kernel may hand
    that worker every connection."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited early"
        served = served_versions(proc.pid, log)
        live = set(served.values())
        if served and None not in live and (version is None or live == {version}):
            return
        time.sleep(0.5)
    raise TimeoutError(f"not every worker serves version {version or 'any'}: {served}")


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
        # serve.sh execs the gunicorn installed beside this interpreter (a venv's bin is
        # not on PATH when it runs as .venv/bin/python -m pytest).
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
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
        if wait == "/ready":  # benchmarks and tests start with every worker warm
            wait_every_worker(proc, log)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
