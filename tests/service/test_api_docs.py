"""/docs: Swagger UI over the service's own openapi.yaml, its files served by the service.

The page in a real browser ("try it out" included) is tested in tests/web/test_page.py.
"""

from __future__ import annotations

import re

from service.api import docs


def test_docs_page_loads_swagger_ui_from_the_service_itself(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and not [u for u in urls if "//" in u]  # nothing from another host
    for url in urls:  # relative to /docs, as a browser resolves them
        got = client.get("/" + url)
        assert got.status_code == 200, url
        assert got.data
    script = client.get("/static/docs.js").get_data(as_text=True)
    assert 'url: "openapi.yaml"' in script and "validatorUrl: null" in script


def test_docs_assets_are_the_installed_swagger_ui(client):
    folder = docs.assets_dir()
    assert folder is not None and folder.parent.name == "swagger_ui"
    r = client.get("/docs/swagger-ui-bundle.js")
    assert r.status_code == 200 and "javascript" in r.mimetype
    assert r.data == (folder / "swagger-ui-bundle.js").read_bytes()
    assert b"SwaggerUIBundle" in r.data
    assert client.get("/docs/swagger-ui.css").mimetype == "text/css"


def test_docs_serves_only_the_files_the_page_loads(client):
    # The wheel's folder also holds Swagger Editor, source maps and more: none of it is
    # served (and a name is one path segment, so no path leaves the folder).
    for name in ("swagger-editor-bundle.js", "swagger-ui.js.map", "LICENSE", "index.css"):
        r = client.get(f"/docs/{name}")
        assert r.status_code == 404, name
        assert r.json["error"]["code"] == "not_found"


def test_docs_without_swagger_ui_installed_is_a_json_404(client, monkeypatch):
    monkeypatch.setattr(docs, "assets_dir", lambda: None)
    r = client.get("/docs")
    assert r.status_code == 404
    assert "swagger-ui-py" in r.json["error"]["message"]
    assert client.get("/docs/swagger-ui.css").status_code == 404


def test_docs_needs_no_api_key(settings, model, detector):
    # Like the web page: the key guards /predict, not the documentation of it.
    from dataclasses import replace

    from service.app import create_app

    app = create_app(replace(settings, api_key="secret"), model=model, detector=detector)
    c = app.test_client()
    assert c.get("/docs").status_code == 200
    assert c.get("/docs/swagger-ui.css").status_code == 200
    assert c.post("/predict", data=b"x").status_code == 401
