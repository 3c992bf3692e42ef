"""EDA finds what was planted: duplicates (some with conflicting labels), leaks, blanks."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from tests.conftest import write_dataset
from trainer.cli import main


def test_eda_reports_planted_defects(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", {"train": 6, "test": 2}, seed=3)
    train = root / "train"
    # 2 exact copies inside train, one of them under another label (conflict).
    shutil.copy(train / "happy" / "train_0.jpg", train / "happy" / "copy.jpg")
    shutil.copy(train / "sad" / "train_0.jpg", train / "angry" / "relabelled.jpg")
    # 1 test image that is also in train (leak).
    shutil.copy(train / "fear" / "train_1.jpg", root / "test" / "fear" / "leak.jpg")
    # 2 blank images (same pixels, so also one duplicate group) and 1 unreadable file.
    for name in ("blank1.png", "blank2.png"):
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(train / "neutral" / name)
    (train / "surprise" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    rgb = np.random.default_rng(1).integers(0, 255, (64, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(train / "disgust" / "rgb.png")

    out = tmp_path / "eda"
    assert main(["eda", str(root), "--out", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    res = json.loads((out / "eda.json").read_text())
    assert res["counts"]["train"]["happy"] == 7 and res["counts"]["test"]["fear"] == 3
    assert res["duplicates"]["groups"] == 4  # happy copy, sad/angry, fear leak, the blanks
    assert res["duplicates"]["groups_with_conflicting_labels"] == 1
    assert res["leakage"]["held_out_images_also_in_train"] == 1
    assert sorted(res["blank"]) == ["train/neutral/blank1.png", "train/neutral/blank2.png"]
    assert len(res["unreadable"]) == 1 and "broken.jpg" in res["unreadable"][0]
    assert res["modes"] == {"L": 61, "RGB": 1}
    assert res["sizes"]["32x64"] == 1
    assert res["imbalance_ratio"] == round(8 / 6, 2)
    for f in ("report.md", "class_counts.png", "samples.png", "sizes_modes.png"):
        assert (out / f).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "1 held-out images also appear in train" in report
