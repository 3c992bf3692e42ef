"""The browser page at ``/``: static files only, served by the service itself (no CDN)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

STATIC = Path(__file__).resolve().parent.parent / "static"
bp = Blueprint("web", __name__, static_folder=STATIC, static_url_path="/static")


@bp.get("/")
def index():
    # Cached briefly: the page is small and ships with the service version.
    return send_from_directory(bp.static_folder, "index.html", max_age=60)
