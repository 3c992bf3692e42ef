"""python -m service.video: the same analysis as /predict/video, written as CSV, JSON
and a plot, with fakes (fast) and end to end on the shipped model and YuNet (slow)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from bench.videos import Mover, blob, blobs, crossing_faces
from service.analyzer import Analyzer
from service.config import Settings
from service.model.registry import ModelSlot
from service.video.__main__ import build, main, parse_args, plot, run
from service.video.analysis import Limits, VideoAnalysis, VideoOptions
from tests.conftest import CLASSES, ROOT
from tests.service.blobs import BlobDetector, level
from tests.service.conftest import FakeModel

SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())


def test_csv_json_and_plot_of_two_tracks(tmp_path):
    clip = blobs(
        tmp_path / "two.avi",
        [
            Mover(blob(level("happy"), 40), (10, 10), (200, 10)),
            Mover(blob(level("sad"), 40), (200, 150), (10, 150)),
        ],
    )
    args = parse_args(
        [str(clip), "--csv", str(tmp_path / "o.csv"), "--json", str(tmp_path / "o.json")]
    )
    model = FakeModel()
    analyzer = Analyzer(ModelSlot.fixed(model), BlobDetector(), 40_000_000)
    with VideoAnalysis(clip, analyzer, model, VideoOptions(fps=2), Limits()) as a:
        result = run(a, args, progress=False)
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert len(rows) == 12  # 6 frames x 2 faces
    assert list(rows[0])[:9] == [
        "time", "frame", "track_id", "x", "y", "width", "height", "emotion", "confidence"
    ]  # fmt: skip
    assert set(CLASSES) <= set(rows[0])
    by_track = {(r["track_id"], r["emotion"]) for r in rows}
    assert by_track == {("1", "happy"), ("2", "sad")}
    assert [t["dominant_emotion"] for t in result["tracks"]] == ["happy", "sad"]
    plot(result, tmp_path / "o.png")
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arguments_must_say_where_to_write(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args([str(tmp_path / "a.mp4")])
    assert "--csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([str(tmp_path / "a.mp4"), "--csv", "x.csv", "--start", "3", "--end", "2"])


@pytest.mark.slow
@pytest.mark.shared
def test_end_to_end_on_the_shipped_model(yunet_path, tmp_path):
    clip = crossing_faces(tmp_path / "cross.mp4", seconds=2.0)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable, "-m", "service.video", str(clip),
            "--csv", f"{out}.csv", "--json", f"{out}.json", "--plot", f"{out}.png",
            "--model-dir", str(ROOT / "models" / "emotion" / "2"),
            "--yunet-model", str(yunet_path), "--smoothing", "1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "8 frames analysed, 2 tracks" in proc.stderr
    assert "frame/s" in proc.stderr or "it/s" in proc.stderr or "8/8" in proc.stderr  # tqdm
    result = json.loads((tmp_path / "out.json").read_text())
    # The JSON is the API's answer: it validates against openapi.yaml's schema.
    schema = {"$ref": "#/components/schemas/VideoPrediction", "components": SPEC["components"]}
    OAS30Validator(schema).validate(result)
    assert all("smoothed" in face for f in result["frames"] for face in f["faces"])
    assert {t["dominant_emotion"] for t in result["tracks"]} == {"happy"}  # the astronaut
    assert (tmp_path / "out.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.shared
def test_threads_are_the_detector_a_worker_share_and_openvino_its_own_choice(yunet_path):
    settings = Settings.from_env(
        {},
        model_dir=ROOT / "models" / "emotion" / "2",
        yunet_model=str(yunet_path),
        runtime="openvino",
        precision="f32",
        workers=2,
    )
    analyzer, model = build(settings)
    assert model.threads == 0  # FER_INFERENCE_THREADS unset: no INFERENCE_NUM_THREADS
    for net in analyzer.detector.networks:  # type: ignore[attr-defined]
        threads = net.requests.compiled.get_property("INFERENCE_NUM_THREADS")
        assert threads == settings.threads_per_worker()


def test_an_unreadable_video_is_an_error_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    model = FakeModel()
    built = (Analyzer(ModelSlot.fixed(model), BlobDetector(), 10**8), model)
    assert main([str(bad), "--csv", str(tmp_path / "o.csv")], built) == 1
    assert "not a video" in capsys.readouterr().err
