"""A real gunicorn on 127.0.0.1 with a real exported model: requests, errors, metrics
merged across workers, a killed worker replaced, a clean shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from tests.conftest import jpeg_bytes
from tests.server import gunicorn, wait_ready
from tests.service.conftest import SPEC

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model, yunet_path, tmp_path_factory):
    with gunicorn(tiny_model.parent, yunet_path, tmp_path_factory.mktemp("srv")) as srv:
        yield srv


def checked(resp: requests.Response) -> requests.Response:
    """Every response of the real server must match openapi.yaml too."""
    if not resp.request.path_url.startswith("/metrics"):
        SPEC.validate_response(RequestsOpenAPIRequest(resp.request), RequestsOpenAPIResponse(resp))
    return resp


def _post(url, data, **params):
    return checked(
        requests.post(
            url + "/predict",
            data=data,
            params=params,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
    )


def test_real_photos(server, astronaut):
    url, _, _ = server
    one = _post(url, jpeg_bytes(astronaut)).json()
    assert len(one["faces"]) == 1 and one["detector"] == "yunet"
    assert one["faces"][0]["box"]["width"] > 60 and one["model"]["version"] == "1"
    mosaic = np.vstack([np.hstack([astronaut, astronaut[:, ::-1]])] * 2)
    four = _post(url, jpeg_bytes(mosaic)).json()
    assert len(four["faces"]) == 4
    areas = [f["box"]["width"] * f["box"]["height"] for f in four["faces"]]
    assert areas == sorted(areas, reverse=True)
    sky = np.zeros((480, 640, 3), np.uint8)
    sky[:] = (90, 140, 220)
    none = _post(url, jpeg_bytes(sky))
    assert none.status_code == 200 and none.json()["faces"] == []


def test_multipart_and_errors_over_http(server, astronaut):
    url, _, _ = server
    r = checked(
        requests.post(
            url + "/predict",
            files={"image": ("a.jpg", jpeg_bytes(astronaut))},
            data={"top_k": "2"},
            timeout=30,
        )
    )
    assert r.status_code == 200 and len(r.json()["faces"][0]["top"]) == 2
    r = _post(url, b"not an image")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_image"
    r = requests.put(url + "/predict", timeout=10)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    r = checked(
        requests.post(
            url + "/predict",
            data=b"\0" * (11 * 1024 * 1024),
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    ready = checked(requests.get(url + "/ready", timeout=10)).json()
    assert ready["ready"] and ready["version"] == "1"


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_are_merged_across_workers(server, astronaut):
    url, _, _ = server
    before = requests.get(url + "/metrics", timeout=10).text
    n = 12
    for _ in range(n):  # new connections: gunicorn spreads them over both workers
        _post(url, jpeg_bytes(astronaut))
    text = requests.get(url + "/metrics", timeout=10).text
    name = 'fer_http_requests_total{endpoint="/predict",method="POST",status="200"}'
    assert _metric(text, name) - _metric(before, name) == n
    assert _metric(text, 'fer_stage_duration_seconds_count{stage="detect"}') >= n
    assert 'fer_model_info{name="emotion",version="1"} 1.0' in text
    assert "fer_model_ready 1.0" in text


def test_killed_worker_is_replaced_and_sigterm_exits_cleanly(server, astronaut):
    url, proc, log = server
    workers = subprocess.run(
        ["pgrep", "-P", str(_gunicorn_pid(proc))], capture_output=True, text=True
    ).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[0]), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = subprocess.run(
            ["pgrep", "-P", str(_gunicorn_pid(proc))], capture_output=True, text=True
        ).stdout.split()
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.5)
    else:
        pytest.fail("worker not replaced")
    for _ in range(6):
        assert _post(url, jpeg_bytes(astronaut)).status_code in (200, 503)
    wait_ready(url, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in Path(log).read_text()


def _gunicorn_pid(proc: subprocess.Popen) -> int:
    return proc.pid  # serve.sh execs gunicorn, so the script's pid is the master's
