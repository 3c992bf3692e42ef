"""Interactive API documentation at ``/docs``: Swagger UI over the service's own openapi.yaml.

Swagger UI's files come from the swagger-ui-py wheel, a base dependency, and the service
serves them itself as it serves the web page: nothing is fetched from a CDN, so the page
works where the service has no internet, and it always shows the contract of the code that
answers. Only the files the page loads are served, not the wheel's whole folder (which also
holds Swagger Editor and source maps).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from flask import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

bp = Blueprint("docs", __name__)
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})

# Relative URLs, so that the page works behind a proxy that mounts the service under a
# prefix: from /docs, "docs/x" is /docs/x and "openapi.yaml" is /openapi.yaml.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Facial emotion recognition: API</title>
  <link rel="icon" href="docs/favicon-32x32.png">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="static/docs.js"></script>
</body>
</html>
"""


@functools.cache
def assets_dir() -> Path | None:
    """swagger-ui-py's static folder, found without importing the package (it pulls in
    Jinja templates and framework handlers the service does not use); looked up once per
    process, not on every request."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


@bp.get("/docs")
def page():
    if assets_dir() is None:
        raise NotFound("this installation has no Swagger UI (pip install swagger-ui-py)")
    return Response(PAGE, content_type="text/html; charset=utf-8")


@bp.get("/docs/<asset>")
def asset(asset: str):
    folder = assets_dir()
    if folder is None or asset not in ASSETS:
        raise NotFound(f"no such documentation file: {asset!r}")
    # Cached for a day: the files change only with the pinned wheel.
    return send_from_directory(folder, asset, max_age=86400)
