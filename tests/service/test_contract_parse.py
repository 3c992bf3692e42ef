"""A version whose contract files are malformed, or ask for what the service cannot do, is
refused by the registry with the reason, and the version before it keeps serving."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from service.model.classifier import VersionClassifier
from service.model.registry import ModelSlot
from tests.conftest import CLASSES

GOOD = {
    "name": "emotion",
    "version": "1",
    "input": {"shape": [None, 48, 48, 3], "dtype": "uint8"},
    "preprocessing": {"resize_shrink": "INTER_AREA", "resize_enlarge": "INTER_LINEAR"},
    "face_crop": {"square": True, "scale": 1.1},
    "metrics": {"test": {"images": 10, "accuracy": 0.5, "macro_f1": 0.4}},
}


class ContractModel(VersionClassifier):
    """The real loading (Contract.read of the folder, warm-up) around a uniform fake net."""

    runtime = "fake"

    def _open(self) -> None:
        self.precision = "f32"

    def _call(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), len(self.labels)), 1 / len(self.labels), np.float32)


def write_version(root: Path, v: int, meta: dict, labels: object = CLASSES) -> Path:
    d = root / str(v)
    d.mkdir(parents=True)
    (d / "saved_model.pb").write_text("x")
    (d / "metadata.json").write_text(json.dumps({**meta, "version": str(v)}))
    (d / "labels.json").write_text(json.dumps(labels))
    return d


def _without(key: str) -> dict:
    meta = copy.deepcopy(GOOD)
    del meta[key]
    return meta


def _with(section: str, key: str, value: object) -> dict:
    meta = copy.deepcopy(GOOD)
    meta[section][key] = value
    return meta


BROKEN = {
    "no name": (_without("name"), CLASSES, 'metadata.json has no "name"'),
    "no input": (_without("input"), CLASSES, 'metadata.json has no "input"'),
    "unknown interpolation": (
        _with("preprocessing", "resize_shrink", "INTER_LANCZOS4"),
        CLASSES,
        "metadata.json: unknown interpolation 'INTER_LANCZOS4'",
    ),
    "colour": (_with("preprocessing", "color", "rgb"), CLASSES, "metadata.json: colour 'rgb'"),
    "dtype": (_with("input", "dtype", "float32"), CLASSES, "metadata.json: input dtype 'float32'"),
    "metric not a number": (
        _with("metrics", "test", {"accuracy": "high"}),
        CLASSES,
        "metadata.json: metrics.test has a value that is not a number",
    ),
    "metrics not an object": (
        _with("metrics", "test", [0.5]),
        CLASSES,
        'metadata.json: "test" must be a JSON object',
    ),
    "labels not a list": (GOOD, {"0": "angry"}, "labels.json must be a non-empty list"),
    "calibration not an object": (
        {**GOOD, "calibration": 0.6},
        CLASSES,
        'metadata.json: "calibration" must be a JSON object',
    ),
    "temperature zero": (
        {**GOOD, "calibration": {"temperature": 0}},
        CLASSES,
        "metadata.json: calibration.temperature 0 is not a number > 0",
    ),
    "temperature a boolean": (
        {**GOOD, "calibration": {"temperature": True}},
        CLASSES,
        "metadata.json: calibration.temperature True is not a number > 0",
    ),
    "no temperature": (
        {**GOOD, "calibration": {"uncertain_below": 0.5}},
        CLASSES,
        "metadata.json: calibration.temperature None is not a number > 0",
    ),
    "threshold above 1": (
        {**GOOD, "calibration": {"temperature": 0.6, "uncertain_below": 1.5}},
        CLASSES,
        "metadata.json: calibration.uncertain_below 1.5 is not a number in [0, 1]",
    ),
}


@pytest.fixture
def slot(tmp_path: Path) -> ModelSlot:
    write_version(tmp_path, 1, GOOD)
    slot = ModelSlot(tmp_path, ContractModel)
    assert slot.check() and slot.current().version == "1"
    return slot


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_version_with_a_bad_contract_is_refused_and_the_old_one_serves(slot, case, caplog):
    meta, labels, problem = BROKEN[case]
    write_version(slot.model_dir, 2, meta, labels)
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        assert not slot.check()
    assert slot.current().version == "1"
    assert f"ContractError: {problem}" in (slot.status_error() or "")
    refused = [r for r in caplog.records if r.getMessage() == "model version refused"]
    assert len(refused) == 1 and problem in refused[0].error
    assert refused[0].serving.endswith("v1")


def test_no_version_before_it_means_not_ready_with_the_reason(tmp_path):
    write_version(tmp_path, 1, GOOD, labels=[])
    slot = ModelSlot(tmp_path, ContractModel)
    assert not slot.check() and slot.peek() is None
    assert "labels.json must be a non-empty list" in (slot.status_error() or "")
