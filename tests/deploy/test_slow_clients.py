"""Stalled clients (connections that send nothing or half their headers) must not stop
others from being served: the repo's nginx config in front of a real gunicorn."""

from __future__ import annotations

import pytest

from bench.slow_clients import nginx, probe, stalled
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
