"""The README and the documentation site: a short README whose links all lead somewhere, a
site that builds strictly (broken internal links and anchors fail it), renders the
repository's own openapi.yaml, and fetches nothing from the network when viewed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
MAX_README_LINES = 250
# [text](target) and ![alt](target), the text possibly over several lines, an optional title.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, mailto:, //host


def readme_targets() -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", README.read_text(encoding="utf-8")))
    return LINK.findall(text) + HTML_SRC.findall(text)


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_every_relative_link_and_image_in_the_readme_exists():
    targets = readme_targets()
    relative = [t for t in targets if not EXTERNAL.match(t) and not t.startswith("#")]
    assert "docs/img/web-page.png" in relative  # the one picture: the web page at work
    missing = [t for t in relative if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_readme_picture_is_small():
    assert (ROOT / "docs" / "img" / "web-page.png").stat().st_size < 300 * 1024


def test_every_setting_is_in_the_configuration_page():
    from dataclasses import fields

    from service.config import Settings

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [f.name for f in fields(Settings) if f"`FER_{f.name.upper()}`" not in page]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_the_configuration_page_gives_the_real_defaults():
    # Each row's documented default, read as the service reads that variable, must give
    # the default the service has: a changed default cannot leave the page behind.
    from service.config import Settings

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`FER_\w+`(?:, `FER_\w+`)*) \| ([^|]+) \|", page, re.MULTILINE)
    defaults, checked = Settings.from_env({}), 0
    for names, values in rows:
        names = re.findall(r"`(FER_\w+)`", names)
        shown = re.findall(r"`([^`]*)`", values)
        if len(shown) != len(names) or any("$" in v for v in shown):
            continue  # (empty), or a path under $TMPDIR
        for name, value in zip(names, shown, strict=True):
            field = name.removeprefix("FER_").lower()
            if not hasattr(defaults, field):
                continue  # the second table: read by compose and the tests, not Settings
            documented, actual = (
                getattr(Settings.from_env({name: value}), field),
                getattr(defaults, field),
            )
            if isinstance(documented, Path) and not documented.is_absolute():
                documented = ROOT / documented  # the page names it from the repository
            assert documented == actual, f"docs/configuration.md says {name} defaults to {value!r}"
            checked += 1
    assert checked >= 20


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    cmd += ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


@pytest.mark.slow
def test_the_site_builds_strictly_and_renders_the_repository_openapi(site):
    assert (site / "index.html").is_file()
    api = site / "api" / "index.html"
    assert api.is_file()
    # The contract in the site is the repository's file itself, not a copy that can drift.
    assert (site / "openapi.yaml").read_bytes() == (ROOT / "openapi.yaml").read_bytes()
    assert 'class="swagger-ui-iframe"' in api.read_text(encoding="utf-8")
    (frame,) = (site / "api").glob("swagger-*.html")
    page = frame.read_text(encoding="utf-8")
    assert '"../openapi.yaml"' in page
    # Swagger UI's own files are in the site, next to the page, not on a CDN.
    for asset in ("javascripts/swagger-ui-bundle.js", "stylesheets/swagger-ui.css"):
        assert (site / "assets" / asset).is_file(), asset
        assert f"../assets/{asset}" in page


@pytest.mark.slow
def test_the_readme_links_into_the_docs_reach_their_sections(site):
    for target in readme_targets():
        page, _, anchor = target.partition("#")
        if not (page.startswith("docs/") and page.endswith(".md") and anchor):
            continue
        name = page.removeprefix("docs/").removesuffix(".md")
        html = site / ("" if name == "index" else name) / "index.html"
        assert f'id="{anchor}"' in html.read_text(encoding="utf-8"), target


class _Fetches(HTMLParser):
    """What a page makes the browser fetch by itself: scripts, stylesheets, fonts, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "iframe", "img", "source") and a.get("src"):
            self.urls.append(a["src"] or "")
        elif tag == "link" and a.get("href"):
            rel = (a.get("rel") or "").lower().split()
            if not {"canonical", "alternate", "prev", "next"} & set(rel):
                self.urls.append(a["href"] or "")
        self._style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._style:
            self.urls += re.findall(r"url\(\s*['\"]?([^'\")\s]+)", data)
            self.urls += re.findall(r"@import\s+['\"]([^'\"]+)", data)

    def handle_endtag(self, tag: str) -> None:
        self._style = False


@pytest.mark.slow
def test_no_page_fetches_scripts_stylesheets_or_fonts_from_the_network(site):
    remote = re.compile(r"^(?:https?:)?//", re.IGNORECASE)
    found = {}
    for page in site.rglob("*.html"):
        parser = _Fetches()
        parser.feed(page.read_text(encoding="utf-8"))
        bad = [u for u in parser.urls if remote.match(u)]
        if bad:
            found[str(page.relative_to(site))] = bad
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        bad = re.findall(r"(?:url\(\s*['\"]?|@import\s+['\"])((?:https?:)?//[^'\")\s]+)", text)
        if bad:
            found[str(css.relative_to(site))] = bad
    assert not found, f"pages that fetch from the network: {found}"
