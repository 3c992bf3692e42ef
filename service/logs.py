"""Logging configured before the app exists: JSON lines (python-json-logger) or plain text."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        # The process id tells gunicorn's workers apart: which worker refused a version,
        # which one still serves the old one.
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"levelname": "level", "process": "pid"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The service's own level too, so that its lines do not depend on the root logger's:
    # OpenVINO's model conversion sets the root level to ERROR while it runs.
    logging.getLogger("service").setLevel(level.upper())
