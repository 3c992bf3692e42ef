"""Calibrated confidences: the version's temperature applied by every runtime's classifier,
the uncertain flag following the threshold (the version's or the request's), and a
version without calibration served exactly as before."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.app import create_app
from service.detection import Face
from service.model.calibration import temper, uncertain
from tests.conftest import CLASSES
from tests.service.conftest import EXAMPLES, CheckedClient, FakeDetector, FakeModel
from tests.service.test_api import photo
from tests.service.test_contract_parse import GOOD, ContractModel, write_version

CALIBRATION = {"method": "temperature", "temperature": 0.5, "uncertain_below": 0.8}


@st.composite
def probability_rows(draw) -> np.ndarray:
    """Softmax outputs as a network gives them: float32, summing to 1, zeros possible."""
    raw = draw(st.lists(st.floats(0, 1e3), min_size=len(CLASSES), max_size=len(CLASSES)))
    x = np.asarray(raw, np.float64)
    if x.sum() == 0:
        x[0] = 1.0
    return (x / x.sum()).astype(np.float32)


@EXAMPLES
@given(p=probability_rows(), t=st.floats(0.05, 20))
def test_calibrated_probabilities_sum_to_one_and_keep_the_ranking(p, t):
    q = temper(p[None], t)[0]
    assert q.dtype == np.float32 and np.all(q >= 0)
    assert abs(float(q.sum()) - 1) < 1e-5
    assert int(np.argmax(q)) == int(np.argmax(p))  # the answer never changes
    # Weakly monotone: a label more probable before is never less probable after.
    i, j = np.nonzero(p[:, None] > p[None, :])
    assert np.all(q[i] >= q[j])
    assert np.all(q[p == 0] == 0)


def test_temperature_sharpens_below_one_and_softens_above():
    p = np.array([[0.6, 0.3, 0.1]], np.float32)
    assert temper(p, 0.5)[0, 0] > 0.6 > temper(p, 2.0)[0, 0]
    np.testing.assert_allclose(temper(p, 1.0), p, rtol=1e-6)
    np.testing.assert_allclose(temper(p, 0.5)[0], np.array([36, 9, 1]) / 46, rtol=1e-6)


def test_the_flag_compares_the_confidence_as_answered():
    assert uncertain(0.79994, 0.8) is True
    assert uncertain(0.79995, 0.8) is False  # answered as 0.8, which is not below 0.8
    assert uncertain(0.1, None) is None


class Skewed(ContractModel):
    """The real VersionClassifier (flip TTA, calibration) around a fixed net whose answer
    differs for a face and its mirror."""

    def _call(self, x: np.ndarray) -> np.ndarray:
        mirrored = x[:, 0, 0, 0] > 0  # the faces below put their mark at the top right
        out = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02], np.float32), (len(x), 1))
        out[mirrored] = np.array([0.3, 0.4, 0.1, 0.1, 0.05, 0.03, 0.02], np.float32)
        return out


def _faces(n: int = 3) -> np.ndarray:
    faces = np.zeros((n, 48, 48, 3), np.uint8)
    faces[:, 0, -1] = 255  # the mirror has it at the top left: x[:, 0, 0]
    return faces


def _loaded(tmp_path: Path, meta: dict, **kw) -> Skewed:
    model = Skewed(write_version(tmp_path, 1, meta), **kw)
    model.load()
    assert model.ready, model.error
    return model


def test_the_temperature_applies_to_the_flip_tta_mean(tmp_path):
    model = _loaded(tmp_path, {**GOOD, "calibration": CALIBRATION})
    mean = np.array([[0.4, 0.3, 0.1, 0.1, 0.05, 0.03, 0.02]], np.float32)
    got = model.predict(_faces())
    np.testing.assert_allclose(got, np.repeat(temper(mean, 0.5), 3, axis=0), rtol=1e-6)
    assert model.calibration is not None and model.calibration.temperature == 0.5


def test_calibration_off_serves_the_networks_probabilities(tmp_path):
    model = _loaded(tmp_path, {**GOOD, "calibration": CALIBRATION}, calibrate=False)
    mean = np.array([0.4, 0.3, 0.1, 0.1, 0.05, 0.03, 0.02], np.float32)
    np.testing.assert_allclose(model.predict(_faces()), np.tile(mean, (3, 1)), rtol=1e-6)
    assert model.calibration is None


def test_a_version_without_calibration_predicts_exactly_as_before(tmp_path):
    model = _loaded(tmp_path, GOOD)
    raw = model._call(_faces())
    mirror = model._call(_faces()[:, :, ::-1])
    np.testing.assert_array_equal(model.predict(_faces()), (raw + mirror) / 2.0)
    assert model.calibration is None


# ---------------------------------------------------------------- over HTTP (fake model)

FACES = [Face(100, 20, 80, 90, 0.95), Face(10, 10, 40, 40, 0.9)]


class Confident(FakeModel):
    """First face 0.9 sure, the second 0.6: one each side of the threshold."""

    def predict(self, faces):
        p = np.full((len(faces), 7), 0.4 / 6, np.float32)  # later faces: angry at 0.6
        p[1:, 0] = 0.6
        p[0] = 0.1 / 6  # the first: happy at 0.9
        p[0, 3] = 0.9
        return p


def _client(settings, calibration: dict | None = CALIBRATION):
    model = Confident()
    if calibration is not None:
        model.metadata["calibration"] = calibration
    app = create_app(settings, model=model, detector=FakeDetector(FACES))
    app.test_client_class = CheckedClient
    return app.test_client()


def _post(client, **options):
    data = {"image": (io.BytesIO(photo()), "p.jpg"), **{k: str(v) for k, v in options.items()}}
    r = client.post("/predict", data=data)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_the_flag_follows_the_versions_threshold(settings):
    body = _post(_client(settings))
    assert body["model"]["calibrated"] is True and body["uncertain_below"] == 0.8
    assert [(f["confidence"], f["uncertain"]) for f in body["faces"]] == [
        (0.9, False),
        (0.6, True),
    ]


@pytest.mark.parametrize("threshold,flags", [(0.5, [False, False]), (0.95, [True, True])])
def test_min_confidence_overrides_the_threshold(settings, threshold, flags):
    body = _post(_client(settings), min_confidence=threshold)
    assert body["uncertain_below"] == threshold
    assert [f["uncertain"] for f in body["faces"]] == flags


def test_min_confidence_works_for_a_version_without_calibration(settings):
    client = _client(settings, calibration=None)
    assert [f["uncertain"] for f in _post(client)["faces"]] == [None, None]
    body = _post(client, min_confidence=0.7)
    assert body["model"]["calibrated"] is False
    assert [f["uncertain"] for f in body["faces"]] == [False, True]


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "nan", "high", "true"])
def test_a_bad_min_confidence_is_422_naming_it(settings, bad):
    r = _client(settings).post(
        "/predict", data={"image": (io.BytesIO(photo()), "p.jpg"), "min_confidence": bad}
    )
    assert r.status_code == 422 and "min_confidence" in r.json["error"]["fields"]


def test_json_null_min_confidence_is_422(settings):
    import base64

    body = {"image": base64.b64encode(photo()).decode(), "min_confidence": None}
    r = _client(settings).post("/predict", json=body)
    assert r.status_code == 422 and "min_confidence" in r.json["error"]["fields"]


def test_batch_answers_carry_the_flag(settings):
    files = [("a.jpg", photo()), ("b.jpg", photo())]
    data = {f"image{i}": (io.BytesIO(b), n) for i, (n, b) in enumerate(files)}
    r = _client(settings).post("/predict/batch", data=data)
    assert r.status_code == 200
    for item in r.json["results"]:
        assert [f["uncertain"] for f in item["result"]["faces"]] == [False, True]


def test_uncertain_faces_are_counted_per_emotion(settings):
    client = _client(settings)
    angry, happy = _uncertain_count(client, "angry"), _uncertain_count(client, "happy")
    _post(client)
    _post(client)
    assert _uncertain_count(client, "angry") == angry + 2  # the 0.6 face, twice
    assert _uncertain_count(client, "happy") == happy  # the 0.9 face is not uncertain


def _uncertain_count(client, emotion: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(f'fer_uncertain_predictions_total{{emotion="{emotion}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_v1_models_shows_the_calibration(settings):
    info = _client(settings).get("/v1/models").json
    assert info["calibration"]["temperature"] == 0.5
    assert info["calibration"]["uncertain_below"] == 0.8
    assert _client(settings, calibration=None).get("/v1/models").json["calibration"] is None


def test_v2_metadata_says_the_probabilities_are_calibrated(settings):
    meta = _client(settings).get("/v2/models/fake").json
    assert meta["parameters"]["calibrated"] is True
    assert meta["parameters"]["temperature"] == 0.5


def test_the_annotated_image_draws_uncertain_faces_in_amber(settings):
    import base64

    import cv2

    body = _post(_client(settings), annotate="true")
    jpeg = np.frombuffer(base64.b64decode(body["annotated_image"]), np.uint8)
    bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR).astype(int)
    # The boxes' left edges: the certain face (x=100) green, the uncertain one (x=10) amber.
    certain, unsure = bgr[60, 100], bgr[30, 10]
    # A 1-px line through JPEG: compare channels, not levels.
    assert certain[1] > certain[2] + 40 and certain[1] > certain[0] + 40, certain  # green
    assert unsure[2] > unsure[0] + 80 and unsure[1] > unsure[0] + 40, unsure  # amber
