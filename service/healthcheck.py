"""The container's health check: ``python -m service.healthcheck`` exits 0 when /ready
answers 200 on the address gunicorn binds (FER_BIND), 1 otherwise.

Docker runs it inside the container (Dockerfile.gpu's HEALTHCHECK, the compose files), so
it must follow FER_BIND: a fixed port would leave a container on another port unhealthy.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.config import Settings

# Addresses that mean "every interface": the check reaches them through loopback.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def ready_url(bind: str) -> str:
    """The /ready URL for a gunicorn bind address such as ``0.0.0.0:8000`` or ``[::1]:9000``.

    Raises:
        ValueError: for a bind address without a TCP port (a unix socket).
    """
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"FER_BIND={bind!r} has no TCP port to check")
    if host in _WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/ready"


def main() -> int:
    """Check /ready once (2-second timeout); print why it failed."""
    url = ready_url(Settings.from_env().bind)
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 0 if r.status == 200 else 1
    except (urllib.error.URLError, OSError) as e:
        print(f"{url}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
