"""``python -m trainer candidate``: a version's weights kept in float16 between sessions, and
``--init-from`` starting from them as from the exported version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.cli import main


@pytest.fixture(scope="module")
def candidate(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("cand") / "candidates" / "tiny"
    assert main(["candidate", str(tiny_model), "--out", str(out)]) == 0
    return out


def test_a_candidate_is_the_versions_weights_in_float16_with_its_contract(candidate, tiny_model):
    from trainer.candidate import WEIGHTS, read_candidate

    assert sorted(p.name for p in candidate.iterdir()) == sorted(
        ["MODEL_CARD.md", "labels.json", "metadata.json", WEIGHTS]
    )
    meta = json.loads((candidate / "metadata.json").read_text())
    assert meta == json.loads((tiny_model / "metadata.json").read_text())
    import tensorflow as tf

    saved = {
        v.name.removesuffix(":0"): v.numpy() for v in tf.saved_model.load(str(tiny_model)).variables
    }
    weights = read_candidate(candidate)
    assert weights.keys() == saved.keys()
    for k, w in saved.items():
        np.testing.assert_allclose(weights[k], w, rtol=1e-3, atol=1e-4, err_msg=k)


def test_init_from_a_candidate_gives_the_versions_network(candidate, tiny_model):
    import keras

    from trainer.checkpoint import init_from_export
    from trainer.config import TrainConfig
    from trainer.evaluate import load_exported
    from trainer.model import build_model

    meta = json.loads((tiny_model / "metadata.json").read_text())
    cfg = TrainConfig.from_json(json.dumps(meta["training"]))
    model, _ = build_model(cfg, len(meta["labels"]))
    assert init_from_export(model, candidate, meta["labels"]) == len(model.weights)
    x = np.random.default_rng(0).integers(0, 256, (16, 48, 48, 3), dtype=np.uint8)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, load_exported(tiny_model).predict(x), atol=5e-3)


def test_a_candidate_is_not_written_over_another(candidate, tiny_model, capsys):
    assert main(["candidate", str(tiny_model), "--out", str(candidate)]) == 2
    assert "is not empty: delete the candidate there first" in capsys.readouterr().err
