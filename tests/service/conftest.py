"""Service fixtures: fake model and detector injected into the real app, a test client
that checks every response against openapi.yaml, and the property tests' budget."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

from service.app import create_app
from service.config import Settings
from service.detection import Face
from service.model.contract import Contract
from tests.conftest import CLASSES, ROOT

SPEC = OpenAPI.from_file_path(str(ROOT / "openapi.yaml"))

# The property tests' budget. Before a release, run longer:
# FER_PROPERTY_EXAMPLES=2000 pytest tests/service/test_properties.py tests/service/test_serialize.py
EXAMPLES = hypothesis_settings(
    max_examples=int(os.environ.get("FER_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


class FakeModel:
    """Probabilities from mean brightness: dark faces are 'angry', bright ones 'surprise'."""

    def __init__(self, ready: bool = True, input_size: int = 48):
        self.folder = Path("fake")
        self.name, self.version, self.labels = "fake", "7", list(CLASSES)
        self.input_size = input_size
        self.metadata = {
            "preprocessing": {"resize_shrink": "INTER_AREA", "resize_enlarge": "INTER_LINEAR"},
            "face_crop": {"square": True, "scale": 1.1},
            "metrics": {"test": {"images": 10, "accuracy": 0.5, "macro_f1": 0.4}},
        }
        self.ready, self.warm, self.error = ready, ready, None
        self.runtime, self.precision, self.device = "fake", "f32", "unknown"
        self.batches: list[np.ndarray] = []

    @property
    def contract(self) -> Contract:
        """Parsed as a version folder's would be, from the attributes as they are now."""
        size = self.input_size
        meta = {
            "name": self.name,
            "version": self.version,
            "input": {"shape": [None, size, size, 3]},
        }
        return Contract.parse({**meta, **self.metadata}, self.labels)

    @property
    def calibration(self):
        """The metadata's calibration, if a test gave it one (predict does not apply it:
        the fake's probabilities stand for calibrated ones)."""
        return self.contract.calibration

    def load(self) -> None:
        self.ready = self.warm = True

    def predict(self, faces: np.ndarray) -> np.ndarray:
        self.batches.append(faces)
        idx = np.clip((faces.reshape(len(faces), -1).mean(axis=1) / 256 * 7).astype(int), 0, 6)
        probs = np.full((len(faces), 7), 0.05, np.float32)
        probs[np.arange(len(faces)), idx] = 0.7
        return probs


class FakeDetector:
    name = "fake"
    runtime, precision = "fake", "f32"

    def __init__(self, faces: list[Face] | None = None):
        self.faces = faces or []
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        h, w = rgb.shape[:2]
        return [f for f in self.faces if f.x + f.width <= w and f.y + f.height <= h]


class _SentRequest(WerkzeugOpenAPIRequest):
    # The app already consumed the body; response validation needs only path and method.
    @property
    def body(self) -> bytes:
        return b""


class CheckedClient(FlaskClient):
    """A test client whose every response must match openapi.yaml."""

    def open(self, *args, **kwargs):
        resp = super().open(*args, **kwargs)
        if resp.request.path != "/metrics" and not getattr(self, "unchecked", False):
            SPEC.validate_response(_SentRequest(resp.request), WerkzeugOpenAPIResponse(resp))
        return resp


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {}, model_dir=tmp_path / "none", json_logs=False, max_upload_mb=1.0, max_pixels=4_000_000
    )


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def detector() -> FakeDetector:
    return FakeDetector([Face(10, 10, 40, 40, 0.9), Face(100, 20, 80, 90, 0.95)])


@pytest.fixture
def app(settings, model, detector):
    app = create_app(settings, model=model, detector=detector)
    app.test_client_class = CheckedClient
    return app


@pytest.fixture
def client(app) -> CheckedClient:
    return app.test_client()
