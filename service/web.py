"""The browser page at ``/``: static files only, served by the service itself (no CDN)."""

from __future__ import annotations

from flask import Blueprint, send_from_directory

bp = Blueprint("web", __name__, static_folder="static", static_url_path="/static")


@bp.get("/")
def index():
    # Cached briefly: the page is small and ships with the service version.
    return send_from_directory(bp.static_folder, "index.html", max_age=60)
