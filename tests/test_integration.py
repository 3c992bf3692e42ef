"""A real gunicorn on 127.0.0.1 with a real exported model: requests, errors, metrics
merged across workers, a killed worker replaced, a clean shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import requests
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from tests.conftest import jpeg_bytes
from tests.server import gunicorn, wait_ready, wait_until, worker_pids
from tests.service.conftest import SPEC

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model, yunet_path, tmp_path_factory, runtime):
    work = tmp_path_factory.mktemp("srv")
    with gunicorn(tiny_model.parent, yunet_path, work, FER_RUNTIME=runtime) as srv:
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


def test_multipart_and_errors_over_http(server, astronaut, runtime):
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
    ready = checked(requests.get(url + "/ready", timeout=10)).json()
    assert ready["ready"] and ready["version"] == "1" and ready["runtime"] == runtime
    info = checked(requests.get(url + "/v1/models", timeout=10)).json()
    assert info["device"] == "CPU" and info["runtime"] == runtime
    assert info["precision"] in ("bf16", "f32")
    # YuNet runs on OpenVINO wherever it is installed, in FER_PRECISION (auto here).
    for body in (ready, info):
        assert (body["detector"], body["detector_runtime"]) == ("yunet", "openvino")
        assert body["detector_precision"] in ("bf16", "f32")
    if runtime == "openvino":  # one FER_PRECISION, resolved alike for both networks
        assert info["detector_precision"] == info["precision"]


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_are_merged_across_workers(server, astronaut, runtime):
    url, _, _ = server
    before = requests.get(url + "/metrics", timeout=10).text
    n = 12
    for _ in range(n):  # whichever worker takes each: the merged count must be n
        _post(url, jpeg_bytes(astronaut))
    text = requests.get(url + "/metrics", timeout=10).text
    name = 'fer_http_requests_total{endpoint="/predict",method="POST",status="200"}'
    assert _metric(text, name) - _metric(before, name) == n
    assert _metric(text, 'fer_stage_duration_seconds_count{stage="detect"}') >= n
    info = [line for line in text.splitlines() if line.startswith("fer_model_info{")]
    assert len(info) == 1 and info[0].endswith(" 1.0"), info
    assert f'runtime="{runtime}"' in info[0] and 'version="1"' in info[0]
    assert "fer_model_ready 1.0" in text
    # The detector's row, merged over the workers: one, as /v1/models names it.
    rows = [line for line in text.splitlines() if line.startswith("fer_detector_info{")]
    models = requests.get(url + "/v1/models", timeout=10).json()
    assert len(rows) == 1 and rows[0].endswith("} 1.0"), rows
    inside = rows[0][rows[0].index("{") + 1 : rows[0].index("}")]
    labels = dict(kv.split("=") for kv in inside.split(","))
    assert labels == {
        "name": '"yunet"',
        "runtime": f'"{models["detector_runtime"]}"',
        "precision": f'"{models["detector_precision"]}"',
    }


def _raw_http(url: str, request: bytes) -> tuple[int, dict, dict]:
    """Send bytes as they are (requests would refuse to); (status, headers, JSON body)."""
    import json
    import socket

    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    "name,request_bytes,status,code",
    [
        (
            "very long header value",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
            431,
            "header_too_large",
        ),
        (
            "very long URL",
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
        ),
        (
            "too many headers",
            b"GET /health HTTP/1.1\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "header_too_large",
        ),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad_request"),
    ],
)
def test_requests_gunicorn_refuses_get_the_json_error_shape(
    server, name, request_bytes, status, code
):
    url, _, _ = server
    got, headers, body = _raw_http(url, request_bytes)
    assert got == status and headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == code and body["error"]["message"]


def test_30_mb_upload_is_refused_cleanly(server):
    url, _, _ = server
    r = checked(
        requests.post(
            url + "/predict",
            data=b"\xff" * (30 * 1024 * 1024),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_exif_rotated_phone_photo_is_turned_upright_before_detection(server, astronaut):
    # The camera stored the picture sideways and says so in EXIF (orientation 6: rotate
    # 90 degrees clockwise to display). The face is only findable once it is upright.
    from PIL import Image

    url, _, _ = server
    sideways = np.ascontiguousarray(np.rot90(astronaut, k=1))  # what the sensor wrote
    im = Image.fromarray(sideways)
    exif = im.getexif()
    exif[0x0112] = 6
    r = _post(url, jpeg_bytes(sideways, exif=exif.tobytes())).json()
    assert (r["width"], r["height"]) == (astronaut.shape[1], astronaut.shape[0])
    assert len(r["faces"]) == 1
    box = r["faces"][0]["box"]
    assert 100 < box["x"] + box["width"] / 2 < 350 and box["y"] < 250  # where the face is
    # Without the EXIF tag the same pixels stay sideways: the box is elsewhere or absent.
    plain = _post(url, jpeg_bytes(sideways)).json()
    assert (plain["width"], plain["height"]) == (sideways.shape[1], sideways.shape[0])


def test_killed_worker_is_replaced_and_sigterm_exits_cleanly(server, astronaut):
    url, proc, log = server
    # serve.sh execs gunicorn, so the script's pid is the master's.
    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    wait_until(
        lambda: len(now := worker_pids(proc.pid)) == 2 and workers[0] not in now,
        seconds=120,
        what="a replacement worker",
    )
    for _ in range(6):
        assert _post(url, jpeg_bytes(astronaut)).status_code in (200, 503)
    wait_ready(url, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in Path(log).read_text()
