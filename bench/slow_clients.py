"""Slow and stalled clients: does a normal client still get served?

Starts gunicorn on 127.0.0.1 with the bundled model, opens connections that send nothing
and connections that send half a request's headers and stop, then times /health and
/predict for a normal client: straight to gunicorn, and through nginx with the repo's
deploy/nginx/nginx.conf (Debian's nginx must be installed).

    python -m bench.slow_clients [--idle 200] [--partial 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench.server import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


@contextlib.contextmanager
def nginx(upstream: str, work: Path):
    """The repo's nginx.conf, pointed at ``upstream`` and listening on a free port."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    conf = NGINX_CONF.read_text()
    conf = re.sub(r"server api:8000;", f"server {upstream};", conf)
    conf = re.sub(r"listen 8000;", f"listen 127.0.0.1:{port};", conf)
    conf = conf.replace("/tmp/", f"{work}/")
    conf = "daemon off;\nerror_log stderr warn;\n" + conf
    if os.geteuid() == 0:
        # Started as root, nginx's workers run as nobody, who cannot write request
        # bodies above client_body_buffer_size into a private folder such as pytest's.
        conf = "user root;\n" + conf
    (work / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        [exe, "-c", str(work / "nginx.conf"), "-p", str(work)],
        stdout=(work / "nginx.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def stalled(url: str, idle: int, partial: int):
    """``idle`` connections that send nothing, ``partial`` that stop mid-headers."""
    host, port = url.split("//")[1].split(":")
    socks = []
    try:
        for _ in range(idle):
            socks.append(socket.create_connection((host, int(port))))
        for _ in range(partial):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
            socks.append(s)
        time.sleep(1)  # let the server take them in
        yield
    finally:
        for s in socks:
            s.close()


def probe(url: str, body: bytes, n: int = 5, timeout: float = 20) -> list[tuple[float, int | str]]:
    """(milliseconds, status or exception name) of n normal /predict requests."""
    out: list[tuple[float, int | str]] = []
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            r = requests.post(
                url + "/predict", data=body, headers={"Content-Type": "image/jpeg"}, timeout=timeout
            )
            status: int | str = r.status_code
        except requests.RequestException as e:
            status = type(e).__name__
        out.append((round((time.perf_counter() - t0) * 1000, 1), status))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--idle", type=int, default=200)
    p.add_argument("--partial", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args()
    from bench.images import single_face_jpeg
    from bench.server import serve

    body = single_face_jpeg()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(Path(tmp), workers=args.workers, threads=args.threads) as (url, _, _),
    ):
        with nginx(url.split("//")[1], Path(tmp) / "nginx") as proxied:
            for name, target in (("gunicorn directly", url), ("through nginx", proxied)):
                calm = probe(target, body)
                with stalled(target, args.idle, args.partial):
                    busy = probe(target, body)
                print(f"{name}:")
                print(f"  no stalled clients:            {calm}")
                print(f"  {args.idle} idle + {args.partial} half-sent requests: {busy}")


if __name__ == "__main__":
    main()
