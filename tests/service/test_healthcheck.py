"""The container health check follows FER_BIND (tests/deploy/test_containers.py runs it in
a real container on another port)."""

from __future__ import annotations

import http.server
import threading

import pytest

from service import healthcheck
from tests.server import free_port


@pytest.mark.parametrize(
    "bind, url",
    [
        ("0.0.0.0:8000", "http://127.0.0.1:8000/ready"),
        ("127.0.0.1:9123", "http://127.0.0.1:9123/ready"),
        ("[::]:8001", "http://127.0.0.1:8001/ready"),
        ("[::1]:8002", "http://[::1]:8002/ready"),
        ("localhost:8003", "http://localhost:8003/ready"),
        (":8004", "http://127.0.0.1:8004/ready"),
    ],
)
def test_ready_url_follows_the_bind_address(bind, url):
    assert healthcheck.ready_url(bind) == url


@pytest.mark.parametrize("bind", ["unix:/tmp/fer.sock", "127.0.0.1"])
def test_a_bind_address_without_a_port_is_refused(bind):
    with pytest.raises(ValueError, match="no TCP port"):
        healthcheck.ready_url(bind)


@pytest.mark.parametrize("status, code", [(200, 0), (503, 1)])
def test_exit_code_follows_ready(monkeypatch, status, code):
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("FER_BIND", f"0.0.0.0:{port}")
        assert healthcheck.main() == code
        monkeypatch.setenv("FER_BIND", f"0.0.0.0:{free_port()}")  # nothing listens there
        assert healthcheck.main() == 1
    finally:
        server.shutdown()
        server.server_close()
