"""bench.cross_dataset: the tw-posed figures add up, and --write puts them into a version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cross_dataset import both_subsets, calibration_scores, markdown, scores, write
from tests.conftest import CLASSES, copy_tree


def test_a_photo_without_a_face_counts_as_wrong_and_recall_is_per_class():
    y = np.array([0, 0, 1, 1, 4, 4])
    probs = np.full((6, 7), 0.01, np.float32)
    probs[[0, 2, 4, 5], [0, 4, 4, 4]] = 0.9  # angry right, disgust read as neutral, neutral x2
    probs[1] = np.nan  # no face found
    probs[3, 1] = 0.9
    r = scores(probs, y, CLASSES)
    assert (r["images"], r["no_face"]) == (6, 1)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["recall"] == {"angry": 0.5, "disgust": 0.5, "neutral": 1.0}  # classes present
    assert r["macro_recall"] == pytest.approx(2 / 3)
    assert r["predicted"]["neutral"] == 3 and sum(r["predicted"].values()) == 5


def test_the_raters_subset_is_the_rows_they_agreed_with():
    pairs = [("angry", "True"), ("fear", "False"), ("fear", "True"), ("happy", "True")]
    rows = [{"label": c, "rater_agree": a} for c, a in pairs]
    probs = np.eye(7, dtype=np.float32)[[0, 2, 6, 3]]  # the agreed fear read as surprise
    res, y, agree = both_subsets(probs, rows, CLASSES)
    assert agree.tolist() == [True, False, True, True] and y.tolist() == [0, 2, 2, 3]
    assert res["all"]["accuracy"] == 0.75 and res["rater_agree"]["accuracy"] == pytest.approx(2 / 3)
    assert res["rater_agree"]["recall"]["fear"] == 0.0


def test_write_records_the_figures_in_the_version_and_replaces_its_own_section(
    tiny_model, tmp_path
):
    folder = copy_tree(tiny_model, tmp_path / "emotion" / "1")
    y = np.arange(14) % 7
    probs = np.eye(7, dtype=np.float32)[(y + (np.arange(14) >= 7)) % 7]  # half right
    rows = [{"label": CLASSES[k], "rater_agree": "True"} for k in y]
    res, _, _ = both_subsets(probs, rows, CLASSES)
    fitted = json.loads((folder / "metadata.json").read_text())["calibration"]
    res["calibration"] = calibration_scores(probs, y, fitted)
    settings = {"runtime": "openvino", "precision": "f32", "flip_tta": True}
    card_before = (folder / "MODEL_CARD.md").read_text()
    for _ in range(2):  # twice: the section is replaced, not repeated
        write(folder, res, CLASSES, settings)
    meta = json.loads((folder / "metadata.json").read_text())
    tw = meta["metrics"]["tw_posed"]
    assert (tw["images"], tw["accuracy"], tw["macro_recall"]) == (14, 0.5, 0.5)
    assert tw["rater_agree_accuracy"] == 0.5 and set(tw["recall"]) == set(CLASSES)
    assert {"val", "test"} <= set(meta["metrics"])  # the trainer's figures stay
    card = (folder / "MODEL_CARD.md").read_text()
    head = card_before.partition("## Calibration")[0].rstrip()
    assert card.startswith(head) and card.count("## Faces FER2013 never") == 1
    subsets = {k: v for k, v in res.items() if k != "calibration"}
    assert markdown(subsets, CLASSES) in card and "openvino f32, flip TTA True" in card
    # Its calibration scores join the version's, in the metadata and the card's section.
    tw_cal = meta["calibration"]["scores"]["tw_posed"]
    assert tw_cal["before"]["images"] == 14 and "coverage" in tw_cal["after"]
    assert card.count("## Calibration") == 1 and "| tw_posed | calibrated |" in card
    assert (folder / "eval" / "reliability_tw_posed.png").is_file()
    saved = json.loads((folder / "eval" / "tw_posed.json").read_text())
    assert saved["all"]["accuracy"] == 0.5 and saved["set"] == "tw-posed"

    from service.model.contract import Contract

    assert Contract.read(folder).metrics["tw_posed"].accuracy == 0.5  # the service reads it
