"""The bundled model loads in the service and recognises clear FER+ faces."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from service.model.repository import resolve_version
from service.model.runtime import make_classifier
from tests.conftest import ROOT, SHARED
from trainer.data.images import read_pixels, to_model_input

pytestmark = pytest.mark.slow
MODELS = ROOT / "models" / "emotion"


def test_bundled_model_has_its_contract_and_report():
    folder = resolve_version(MODELS)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["face_crop"] == {"square": True, "scale": 1.0}
    assert (folder / "MODEL_CARD.md").is_file() and (folder / "eval" / "README.md").is_file()


def test_bundled_model_classifies_privatetest_faces(runtime):
    labels_csv = SHARED / "data" / "fer2013" / "ferplus.csv"
    if not labels_csv.is_file():
        pytest.skip("FER2013 not available")
    with labels_csv.open() as f:
        rows = [r for r in csv.DictReader(f) if r["usage"] == "PrivateTest" and r["ferplus_label"]]
    rows = rows[::10][:300]
    model = make_classifier(MODELS, runtime)
    assert model.ready, model.error
    faces = np.stack(
        [to_model_input(read_pixels(SHARED / "data" / "fer2013" / r["file"]), 96) for r in rows]
    )
    probs = model.predict(faces)
    pred = probs.argmax(axis=1)
    truth = np.array([model.labels.index(r["ferplus_label"]) for r in rows])
    # The model card reports 87% on all of PrivateTest; a 300-image sample stays far above
    # what a broken export or a preprocessing mismatch would give.
    assert (pred == truth).mean() > 0.78
    # Served calibrated: on FER+ faces the confidence is about the accuracy (the card:
    # ECE 0.015 on all of PrivateTest; the network's own softmax was 0.09 under it).
    assert model.calibration is not None
    assert abs(probs.max(axis=1).mean() - (pred == truth).mean()) < 0.05
