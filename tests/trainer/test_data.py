"""Dataset discovery and bad-data handling: clear messages and exit code 2, no traceback."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSES, write_dataset
from trainer.cli import main
from trainer.data.dataset import load_dataset, scan_csv


def run_cli(args, capsys) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


def test_flat_layout_has_no_split_and_sorted_classes(tmp_path):
    write_dataset(tmp_path, {"": 3})
    ds = load_dataset(tmp_path)
    assert ds.classes == sorted(CLASSES)
    assert ds.splits() == ["all"]
    assert len(ds.samples) == 21


def test_split_layout_reads_train_and_test(tiny_data):
    ds = load_dataset(tiny_data)
    assert ds.splits() == ["test", "train"]
    assert ds.counts()["train"]["happy"] == 16


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _ferplus_row(file, usage, label, votes):
    names = [
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
        "unknown",
        "NF",
    ]
    votes_by_name = dict(zip(names, votes, strict=True))
    return {"file": file, "usage": usage, "ferplus_label": label, **votes_by_name}


def test_csv_soft_labels_drop_single_votes_and_non_emotions(tmp_path):
    write_dataset(tmp_path, {"train": 1, "test": 1})
    rows = [
        _ferplus_row(
            "train/happy/train_0.jpg", "Training", "happy", [2, 6, 1, 0, 0, 0, 0, 1, 0, 0]
        ),
        _ferplus_row("train/sad/train_0.jpg", "Training", "", [3, 0, 0, 3, 0, 0, 0, 0, 4, 0]),
        _ferplus_row("test/fear/test_0.jpg", "PrivateTest", "fear", [0, 0, 2, 0, 0, 0, 8, 0, 0, 0]),
    ]
    for c in CLASSES:  # every class needs an image in train
        rows.append(_ferplus_row(f"train/{c}/train_0.jpg", "Training", c, [0] * 10))
    ds = scan_csv(tmp_path, _write_csv(tmp_path / "l.csv", rows), "ferplus_label", soft=True)
    happy = ds.samples[0]
    # neutral 2, happiness 6 kept; the single surprise vote and the contempt vote dropped.
    assert happy.soft[CLASSES.index("happy")] == pytest.approx(0.75)
    assert happy.soft[CLASSES.index("neutral")] == pytest.approx(0.25)
    assert ds.skipped["no label in CSV"] == 1
    assert {s.split for s in ds.samples} == {"train", "test"}
    # No votes at all: the hard label as a one-hot vector.
    assert ds.samples[2].soft.max() == 1.0


def test_unknown_csv_label_is_a_clear_error(tmp_path, capsys):
    write_dataset(tmp_path, {"": 2})
    _write_csv(tmp_path / "l.csv", [{"file": "happy/img_0.jpg", "label": "joy"}])
    rc, err = run_cli(
        ["train", str(tmp_path), "--labels", str(tmp_path / "l.csv"), "--base-weights", "none"],
        capsys,
    )
    assert rc == 2 and "unknown label(s)" in err and "joy" in err


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "is empty"),
        (
            lambda p: (p / "happy").mkdir() or (p / "happy" / "a.jpg").write_bytes(b"") or p,
            "at least 2 are needed",
        ),
    ],
)
def test_bad_folders_exit_2_with_message(tmp_path, capsys, setup, message):
    rc, err = run_cli(["train", str(setup(tmp_path)), "--base-weights", "none"], capsys)
    assert rc == 2
    assert message in err
    assert "Traceback" not in err


def test_class_without_images_is_named(tmp_path, capsys):
    write_dataset(tmp_path, {"": 2})
    for f in (tmp_path / "fear").iterdir():
        f.unlink()
    rc, err = run_cli(["eda", str(tmp_path), "--out", str(tmp_path / "eda")], capsys)
    assert rc == 2 and "fear" in err


def test_unreadable_images_are_skipped_then_stop_the_run(tmp_path, capsys):
    write_dataset(tmp_path, {"": 4})
    for i in range(3):
        (tmp_path / "happy" / f"broken_{i}.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "happy" / "notes.txt").write_text("not an image")
    rc, err = run_cli(
        [
            "train",
            str(tmp_path),
            "--base-weights",
            "none",
            "--max-bad",
            "2",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        capsys,
    )
    assert rc == 2
    assert "more than 2 unreadable images" in err and "broken_" in err


def test_recipe_notebook_is_the_original_recipe():
    from trainer.config import make_config

    cfg = make_config("notebook", data="x", base_weights="none")
    assert (cfg.stage1_epochs, cfg.stage1_lr, cfg.stage2_lr, cfg.unfreeze) == (5, 1e-3, 1e-5, 50)
    assert (cfg.rotation, cfg.shift, cfg.zoom, cfg.flip, cfg.dropout) == (20.0, 0.2, 0.2, True, 0.5)
    assert cfg.bn_mode == "frozen" and cfg.val_fraction == 0.2 and cfg.input_size == 96
    assert cfg.erasing == 0.0 and cfg.shear == pytest.approx(np.tan(np.radians(0.2)), abs=1e-4)


@pytest.mark.parametrize("recipe", ["notebook", "finetune"])
def test_every_recipe_builds_and_runs_its_augmentation(recipe):
    # Keras checks most factors only when a layer is built, i.e. at the first batch of
    # a real run: the notebook recipe's shear once failed there, minutes into training.
    import tensorflow as tf

    from trainer.config import make_config
    from trainer.model import augmentation

    aug = augmentation(make_config(recipe, base_weights="none", erasing=0.5), 1)
    assert aug is not None
    out = aug(tf.fill((4, 48, 48, 3), 100.0), training=True)
    assert out.shape == (4, 48, 48, 3)


def test_random_erasing_hits_the_given_share_of_images_with_a_patch():
    import tensorflow as tf

    from trainer.config import make_config
    from trainer.model import augmentation

    def erased(p: float) -> tuple[np.ndarray, np.ndarray]:
        geometry = {"flip": False, "rotation": 0.0, "shift": 0.0, "zoom": 0.0}
        aug = augmentation(make_config("finetune", base_weights="none", erasing=p, **geometry), 7)
        if aug is None:
            return np.zeros(400, bool), np.zeros(400)
        out = aug(tf.fill((400, 48, 48, 3), 128.0), training=True).numpy()
        area = (out != 128).any(axis=3).mean(axis=(1, 2))
        return area > 0, area

    hit, area = erased(0.5)
    assert 0.4 < hit.mean() < 0.6  # a probability, not a probability drawn from [0, p]
    assert 0.01 < area[hit].min() and area[hit].max() < 0.4
    hit, area = erased(1.0)
    assert hit.all()
    assert not erased(0.0)[0].any()


def test_erasing_outside_0_1_is_refused(tmp_path, capsys):
    write_dataset(tmp_path, {"": 3})
    rc, err = run_cli(["train", str(tmp_path), "--base-weights", "none", "--erasing", "2"], capsys)
    assert rc == 2 and "--erasing must be a probability" in err


def test_stratified_split_is_seeded(tmp_path):
    from trainer.config import make_config
    from trainer.data.splits import prepare

    write_dataset(tmp_path, {"": 10})
    ds = load_dataset(tmp_path)
    cfg = make_config("finetune", data=str(tmp_path), base_weights="none", input_size=32)
    a, b = prepare(ds, cfg), prepare(ds, cfg)
    assert a.splits["val"].hashes == b.splits["val"].hashes
    assert np.bincount(a.splits["val"].labels).tolist() == [2] * 7
