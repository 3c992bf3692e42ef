"""Stalled clients (connections that send nothing or half their headers) must not stop
others from being served: the repo's nginx config in front of a real gunicorn."""

from __future__ import annotations

import json
import os

import pytest
import requests

from bench.slow_clients import nginx, probe, stalled
from bench.videos import Mover, blob, blobs
from tests.conftest import jpeg_bytes, need_tool
from tests.server import gunicorn

pytestmark = pytest.mark.slow


def test_nginx_keeps_serving_normal_clients_next_to_stalled_ones(
    tiny_model, yunet_path, astronaut, tmp_path
):
    need_tool("nginx")
    body = jpeg_bytes(astronaut)
    with gunicorn(tiny_model.parent, yunet_path, tmp_path / "srv", FER_THREADS="2") as srv:
        url = srv[0]
        with nginx(url.split("//")[1], tmp_path / "nginx") as proxied:
            # 2 workers x 2 threads: far fewer threads than stalled connections.
            with stalled(proxied, idle=100, partial=40):
                results = probe(proxied, body, n=10, timeout=15)
            assert [status for _, status in results] == [200] * 10, results
            # The proxy's own errors keep the service's JSON shape.
            big = probe(proxied, b"\0" * (33 * 1024 * 1024), n=1)
            assert big[0][1] == 413


def test_nginx_passes_videos_up_to_the_services_own_limit_and_streams_their_lines(
    tiny_model, yunet_path, tmp_path
):
    # The proxy's 32 MB cap is for images; /predict/video has its own (the service's
    # default is 100 MB), and its NDJSON answer must not wait in the proxy's buffers.
    need_tool("nginx")
    with gunicorn(tiny_model.parent, yunet_path, tmp_path / "srv") as srv:
        with nginx(srv[0].split("//")[1], tmp_path / "nginx") as proxied:
            video = proxied + "/predict/video"
            mp4 = {"Content-Type": "video/mp4"}
            # 40 MB of noise gets through to the service, which says what is wrong.
            r = requests.post(video, data=os.urandom(40 << 20), headers=mp4, timeout=60)
            assert r.status_code == 415, r.text
            assert r.json()["error"]["code"] == "unsupported_media_type"
            # Above the proxy's video cap: the proxy's own 413, in the same JSON shape.
            r = requests.post(video, data=bytes(130 << 20), headers=mp4, timeout=60)
            assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
            clip = blobs(tmp_path / "c.mp4", [Mover(blob(200), (10, 20), (250, 20))])
            with requests.post(
                video + "?stream=true", data=clip.read_bytes(), headers=mp4, stream=True, timeout=60
            ) as r:
                assert r.status_code == 200
                lines = [json.loads(line) for line in r.iter_lines() if line]
            assert lines[0]["type"] == "video" and lines[-1]["type"] == "summary"
            assert len(lines) == 2 + lines[0]["frames_expected"]
