"""The trainer's reader and writer of metadata.json and labels.json (trainer/contract.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from tests.conftest import ROOT
from trainer.contract import PREPROCESSING, ContractError, ModelContract, read_labels

SHIPPED = sorted(p for p in (ROOT / "models" / "emotion").iterdir() if p.name.isdigit())


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_versions_are_read_and_written_back_byte_for_byte(folder, tmp_path):
    contract = ModelContract.read(folder)
    assert contract.input_size == 96 and list(contract.labels) == read_labels(folder)
    contract.write(tmp_path)
    for name in ("metadata.json", "labels.json"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labels": []}, "'labels' must be a non-empty list"),
        ({"input": {"shape": [None, 96, 64, 3], "dtype": "uint8"}}, "'input' must have the shape"),
        ({"version": "2"}, "'version' must be of type int"),
        ({"preprocessing": {"color": "gray3"}}, "'preprocessing' must have exactly the keys"),
        (
            {"preprocessing": {**asdict(PREPROCESSING), "resize_shrink": "INTER_FOO"}},
            "'preprocessing.resize_shrink' must be one of INTER_AREA, ",
        ),
        (
            {"preprocessing": {**asdict(PREPROCESSING), "resize_enlarge": "INTER_LINEAR_EXACT"}},
            "'preprocessing.resize_enlarge' must be one of INTER_AREA, ",
        ),
        ({"face_crop": {"square": True, "scale": "1"}}, "'face_crop.scale' must be of type int"),
    ],
)
def test_a_malformed_contract_is_refused_with_its_key(tmp_path, change, message):
    meta = json.loads((SHIPPED[0] / "metadata.json").read_text())
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(ContractError, match=message):
        ModelContract.read(tmp_path)
