"""The Video tab and the webcam's track ids in a real headless Chromium against a real
gunicorn (the shipped single-network model, version 2, and YuNet): a generated WebM of
two faces crossing is uploaded, analysed with progress, drawn over playback and charted
per track. Screenshots in artifacts/screenshots/."""

from __future__ import annotations

import pytest

from bench.videos import crossing_faces
from tests.conftest import ROOT
from tests.server import gunicorn
from tests.web.test_page import browser, shot  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(yunet_path, tmp_path_factory):
    work = tmp_path_factory.mktemp("web-video")
    model = ROOT / "models" / "emotion" / "2"
    with gunicorn(model, yunet_path, work, workers=1, FER_VIDEO_TMP_DIR=str(work / "tmp")) as s:
        yield s[0]


@pytest.fixture
def page(browser, server):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1000, "height": 900})
    p = ctx.new_page()
    p.goto(server + "/")
    p.wait_for_function("document.getElementById('model-info').textContent.includes('v2')")
    yield p
    ctx.close()


def overlay_pixel(page, x: int, y: int) -> list[int]:
    return page.evaluate(
        f"Array.from(document.getElementById('clip-overlay').getContext('2d')"
        f".getImageData({x}, {y}, 1, 1).data)"
    )


def test_video_tab_tracks_two_people_and_draws_them_in_step_with_playback(page, tmp_path):
    clip = crossing_faces(tmp_path / "cross.webm", seconds=3.0)
    page.click("#tab-video")
    assert page.locator(".stage").is_hidden()
    page.fill("#video-fps", "5")
    page.set_input_files("#video-file", str(clip))
    page.wait_for_function("document.body.dataset.videoDone === 'true'", timeout=60_000)
    assert "15 frames analysed, 2 people tracked" in page.locator("#message").text_content()
    assert page.locator("#track-list li").count() == 2
    assert page.evaluate("vstate.tracks.map(t => t.frames)") == [15, 15]
    # The chart has a coloured row per track.
    chart = page.evaluate(
        "Array.from(document.getElementById('tracks-chart').getContext('2d')"
        ".getImageData(200, 3 + 16 + 8, 1, 1).data)"
    )
    assert chart[3] == 255 and chart[:3] != [255, 255, 255]
    # Seek: the overlay shows both faces' boxes where the analysis of that moment put them.
    page.evaluate("document.getElementById('clip').currentTime = 1.0")
    page.wait_for_function(
        "(() => { const c = document.getElementById('clip'); "
        "return !c.seeking && Math.abs(c.currentTime - 1.0) < 0.05; })()"
    )
    page.evaluate("drawOverlay()")
    frame = page.evaluate("frameAt(document.getElementById('clip').currentTime)")
    assert frame["time"] == pytest.approx(1.0, abs=0.07) and len(frame["faces"]) == 2
    for face in frame["faces"]:
        shown = face.get("smoothed", face)
        color = page.evaluate(f"COLORS['{shown['emotion']}']")
        rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
        b = face["box"]
        edge = overlay_pixel(page, b["x"], b["y"] + b["height"] // 2)  # on the box's edge
        assert all(abs(a - c) <= 40 for a, c in zip(edge[:3], rgb, strict=True)), (edge, rgb)
    shot(page, "video")


def test_a_file_that_is_not_a_video_is_explained(page, tmp_path):
    page.click("#tab-video")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video at all")
    page.set_input_files("#video-file", str(fake))
    page.wait_for_function("document.getElementById('message').className === 'error'")
    assert "not a video" in page.locator("#message").text_content()


def test_webcam_labels_carry_a_stable_track_id(page):
    page.click("#tab-webcam")
    page.click("#cam-start")
    page.wait_for_function("Number(document.body.dataset.liveFrames || 0) >= 4", timeout=60_000)
    assert page.locator("#faces li").first.get_attribute("data-track") == "1"
    assert page.locator("#faces li").first.text_content().startswith("#1 ")
    face = page.evaluate("state.result.faces[0]")
    assert face["track_id"] == 1 and face["smoothed"]["emotion"] in page.evaluate(
        "Object.keys(COLORS)"
    )
    shot(page, "webcam-tracks")
    page.click("#cam-stop")
