"""Temperature scaling, the uncertain threshold and the calibration scores: the numbers on
cases worked by hand, the fit on data whose true temperature is known, and every export
(and ``trainer calibrate``) writing its calibration into the contract and the card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from trainer import calibration as cal


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_the_fit_recovers_a_known_temperature(true_t):
    # Labels drawn from softmax(z / T): the network's softmax(z) is off by exactly T.
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2.5, (20_000, 7))
    truth = _softmax(z / true_t)
    y = np.array([rng.choice(7, p=p) for p in truth])
    fitted = cal.fit_temperature(_softmax(z), y)
    assert fitted == pytest.approx(true_t, rel=0.05)
    before = cal.scores(_softmax(z), y)
    after = cal.scores(cal.temper(_softmax(z), fitted), y)
    assert after["ece"] < 0.02 < before["ece"] and after["nll"] < before["nll"]


def test_ece_nll_and_brier_on_cases_worked_by_hand():
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 0, 1, 1])
    # Bins: 0.9 (two images, both right), 0.6 (one, wrong), 0.7 (one, right).
    r = cal.reliability(p, y)
    assert r["ece"] == pytest.approx((2 * 0.1 + 1 * 0.6 + 1 * 0.3) / 4)
    assert sum(r["count"]) == 4
    assert cal.nll(p, y) == pytest.approx(-np.log([0.9, 0.9, 0.4, 0.7]).mean())
    brier = [(0.1**2) * 2, (0.1**2) * 2, 0.6**2 * 2, 0.3**2 * 2]
    assert cal.brier(p, y) == pytest.approx(np.mean(brier))


def test_a_confidence_of_one_falls_in_the_last_bin():
    r = cal.reliability(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    assert r["count"][-1] == 2 and r["ece"] == 0.0


def test_the_threshold_is_the_lowest_confidence_that_keeps_the_precision():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    right = np.array([True, True, True, False, True, False])
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.where(right, 0, 1)
    # Precision from the top: 1, 1, 1, 3/4, 4/5, 4/6. At least 0.75: down to 0.7 (4/5).
    t = cal.uncertain_threshold(p, y, target=0.75)
    assert (t.below, t.coverage, t.precision) == (0.7, round(5 / 6, 4), 0.8)
    t = cal.uncertain_threshold(p, y, target=0.95)
    assert (t.below, t.coverage, t.precision) == (0.9, 0.5, 1.0)


def test_tied_confidences_are_kept_or_flagged_together():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2]])
    y = np.array([0, 0, 1])  # the two tied 0.8s: one right, one wrong
    t = cal.uncertain_threshold(p, y, target=0.9)
    assert t.below == 0.9 and t.coverage == pytest.approx(1 / 3, abs=1e-4)


def test_no_confidence_reaching_the_precision_flags_everything():
    p = np.array([[0.9, 0.1], [0.8, 0.2]])
    t = cal.uncertain_threshold(p, np.array([1, 1]))
    assert (t.below, t.coverage) == (1.0, 0.0)


def test_temperature_changes_no_answer():
    p = _softmax(np.random.default_rng(1).normal(0, 3, (500, 7)))
    for t in (0.1, 0.6, 1.7, 12.0):
        q = cal.temper(p, t)
        np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
        np.testing.assert_allclose(q.sum(axis=1), 1.0)


def test_every_export_carries_its_calibration(tiny_model):
    meta = json.loads((tiny_model / "metadata.json").read_text())
    c = meta["calibration"]
    assert c["method"] == "temperature" and c["temperature"] > 0
    assert 0 <= c["uncertain_below"] <= 1 and 0 <= c["coverage"] <= 1
    assert c["fitted_on"]["split"] == "val" and c["fitted_on"]["flip_tta"] is True
    assert c["fitted_on"]["images"] == meta["dataset"]["images"]["val"]
    assert set(c["scores"]) == {"val", "test"}
    for split in ("val", "test"):
        assert set(c["scores"][split]) == {"before", "after"}
        assert (tiny_model / f"reliability_{split}.png").is_file()
    card = (tiny_model / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card and "reliability_val.png" in card


def test_calibrate_refits_a_version_in_place(tiny_model, tmp_path, capsys):
    from trainer.cli import main

    version = tmp_path / "1"
    shutil.copytree(tiny_model, version)
    meta = json.loads((version / "metadata.json").read_text())
    fitted = meta.pop("calibration")
    (version / "metadata.json").write_text(json.dumps(meta, indent=2))
    card = (version / "MODEL_CARD.md").read_text()
    head, _, tail = card.partition("\n## Calibration\n")
    (version / "MODEL_CARD.md").write_text(
        head + "\n## Limits\n" + tail.partition("\n## Limits\n")[2]
    )
    for f in version.glob("reliability_*.png"):
        f.unlink()

    assert main(["calibrate", str(version)]) == 0
    assert "temperature" in capsys.readouterr().out
    again = json.loads((version / "metadata.json").read_text())
    assert again["calibration"]["temperature"] == fitted["temperature"]  # the same fit
    assert {k: v for k, v in again.items() if k != "calibration"} == meta  # nothing else
    text = (version / "MODEL_CARD.md").read_text()
    assert text.count("## Calibration") == 1
    assert text.index("## Calibration") < text.index("## Limits")
    assert (version / "reliability_test.png").is_file()
    # Run again: the section is replaced, not repeated.
    assert main(["calibrate", str(version)]) == 0
    assert (version / "MODEL_CARD.md").read_text().count("## Calibration") == 1
