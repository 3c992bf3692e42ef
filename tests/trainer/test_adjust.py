"""``python -m trainer adjust``: class-prior offsets tuned on the validation split, exported
as a new version the service loads like any other."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import f1_score

from tests.conftest import CLASSES, RUNTIMES, copy_tree
from trainer.adjust import Passes, PriorAdjusted, Search, held_out_gain, scores, search_offsets
from trainer.cli import main
from trainer.errors import TrainerError

# Offsets far from 0, for the export's arithmetic to show.
OFFSETS = np.array([0.5, -1.0, 0.0, 0.3, 1.2, -0.4, 0.0])


def _passes(logits: np.ndarray, labels: np.ndarray, mirror_noise: float = 0.0) -> Passes:
    rng = np.random.default_rng(3)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    mirrored = logits + rng.normal(0, mirror_noise, logits.shape) if mirror_noise else logits
    return Passes(softmax(logits), softmax(mirrored), labels)


def _biased(bias: np.ndarray, n: int = 2800, seed: int = 0) -> Passes:
    """Balanced classes, the true class's logit raised, then every logit shifted by ``bias``:
    what a network trained toward other priors outputs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(bias)
    logits = rng.normal(0, 1, (n, len(bias)))
    logits[np.arange(n), labels] += 2.0
    return _passes(logits + bias, labels, mirror_noise=0.3)


def test_search_finds_a_known_bias_and_undoes_it():
    bias = np.array([0.0, 0.8, 0.0, 0.0, -0.8, 0.0, 0.4])
    passes = _biased(bias)
    offsets = search_offsets(passes, Search())
    # Offsets are defined up to a constant added to all of them (renormalisation).
    np.testing.assert_allclose(offsets - offsets.mean(), -(bias - bias.mean()), atol=0.25)
    before, after = scores(passes, np.stack([0 * offsets, offsets]), "accuracy")
    assert after > before + 0.02
    gain = held_out_gain(passes, Search())
    assert gain["splits"] == 10 and gain["mean"] > 0.01 and gain["sd"] >= 0


def test_offsets_stay_zero_when_no_offset_helps():
    k = 7
    labels = np.arange(140) % k
    perfect = np.full((140, k), -3.0)
    perfect[np.arange(140), labels] = 3.0
    # Confidently wrong: no offset within the range turns any prediction.
    wrong = np.full((140, k), -6.0)
    wrong[np.arange(140), labels] = 6.0
    wrong[:70, :] = np.roll(wrong[:70, :], 1, axis=1)
    # A trade-off: raising class 1 wins the second image and loses the first.
    traded = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    cases = [(perfect, labels), (wrong, labels), (traded, np.array([0, 1]))]
    for logits, y in cases:
        for objective in ("accuracy", "macro_f1"):
            offsets = search_offsets(_passes(logits, y), Search(objective))
            np.testing.assert_array_equal(offsets, 0.0, err_msg=objective)


def test_macro_f1_is_sklearns():
    passes = _biased(np.array([0.0, 1.5, 0.0, 0.0, -1.5, 0.0, 0.4]), n=700)
    candidates = np.random.default_rng(1).normal(0, 1.5, (30, 7))
    want = [
        f1_score(
            passes.labels,
            passes.tta(c).argmax(axis=1),
            labels=range(7),
            average="macro",
            zero_division=0,
        )
        for c in candidates
    ]
    np.testing.assert_allclose(scores(passes, candidates, "macro_f1"), want, atol=1e-12)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--step", "0"], "--step must be positive"),
        (["--range", "-1"], "--range must be positive"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_bad_search_options_exit_2(tmp_path, capsys, option, message):
    rc = main(["adjust", str(tmp_path), *option, "--models-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_the_grid_is_symmetric_and_holds_zero():
    assert len(Search().grid) == 41 and Search().grid[20] == 0.0
    np.testing.assert_allclose(
        Search(bound=1.0, step=0.3).grid, [-0.9, -0.6, -0.3, 0, 0.3, 0.6, 0.9]
    )
    with pytest.raises(TrainerError, match="--objective"):
        Search(objective="loss")


def _contract_only(src: Path, dst: Path, edit) -> Path:
    """A version folder with ``src``'s contract files, its metadata edited (no SavedModel:
    the refusals come before it is read)."""
    dst.mkdir(parents=True)
    shutil.copy(src / "labels.json", dst)
    meta = json.loads((src / "metadata.json").read_text())
    edit(meta)
    (dst / "metadata.json").write_text(json.dumps(meta))
    return dst


def test_refuses_what_is_not_a_trained_version(tiny_model, tmp_path, capsys):
    def ensemble(meta: dict) -> None:
        del meta["training"]
        meta["ensemble"] = {"combine": "mean", "members": []}

    cases = {
        "ensemble": (ensemble, "is an ensemble: adjust a trained version"),
        "adjusted": (lambda m: m.update(adjustment={}), "is already prior-adjusted"),
        "untrained": (lambda m: m.pop("training"), "is not a trained version"),
        "no_data": (lambda m: m.pop("dataset"), "its validation split cannot be rebuilt"),
    }
    for name, (edit, message) in cases.items():
        folder = _contract_only(tiny_model, tmp_path / name, edit)
        rc = main(["adjust", str(folder), "--models-dir", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, name
    rc = main(["adjust", str(tmp_path / "nothing"), "--models-dir", str(tmp_path / "out")])
    assert rc == 2 and "not an exported model version" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def adjusted(tiny_model, tmp_path_factory):
    """``adjust`` run on a copy of the tiny model, every call of the source model recorded."""
    from trainer.evaluate import Exported

    work = tmp_path_factory.mktemp("adjust")
    source = copy_tree(tiny_model, work / "source" / "emotion" / "1")
    calls: list[np.ndarray] = []
    predict = Exported.predict

    def spy(self, images, *args, **kwargs):
        if "adjustment" not in self.contract.details:  # the source, not the new export
            calls.append(np.array(images))
        return predict(self, images, *args, **kwargs)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(Exported, "predict", spy)
        rc = main(["adjust", str(source), "--models-dir", str(work / "models")])
    assert rc == 0, out.getvalue()
    folder = work / "models" / "emotion" / "1"
    return SimpleNamespace(source=source, folder=folder, calls=calls, stdout=out.getvalue())


def test_metadata_has_the_adjustment_and_the_sources_details(adjusted):
    meta = json.loads((adjusted.folder / "metadata.json").read_text())
    src = json.loads((adjusted.source / "metadata.json").read_text())
    for key in ("labels", "input", "preprocessing", "face_crop", "signature"):
        assert meta[key] == src[key], key
    for key in ("training", "dataset", "history", "best_epoch", "train_seconds", "base_weights"):
        assert meta[key] == src[key], key
    assert meta["export_check_max_diff"] <= 1e-4 and meta["created"] >= src["created"]
    assert set(meta["metrics"]) == {"val", "test"} and meta["metrics"]["test"]["images"] == 28
    adj = meta["adjustment"]
    assert adj["source"] == {
        "folder": str(adjusted.source),
        "version": 1,
        "code_revision": src["code_revision"],
    }
    assert list(adj["offsets"]) == src["labels"]
    assert adj["objective"] == "accuracy" and adj["tuned_on"] == "validation split, flip TTA"
    assert adj["validation"]["accuracy_after"] >= adj["validation"]["accuracy_before"]
    assert set(adj["validation"]) >= {"macro_f1_before", "macro_f1_after"}
    assert adj["held_out_gain"]["splits"] == 10
    for f in ("MODEL_CARD.md", "confusion_test.png", "training_curves.png", "saved_model.pb"):
        assert (adjusted.folder / f).is_file(), f


def test_card_and_output_show_the_offsets(adjusted):
    card = (adjusted.folder / "MODEL_CARD.md").read_text()
    assert "## Recipe" in card and "## Prior adjustment" in card and "## Metrics" in card
    assert "validation split only" in card and "| class | offset b |" in card
    assert "Held-out gain in accuracy" in card
    assert "| accuracy |" in adjusted.stdout and "| neutral |" in adjusted.stdout
    assert f"exported {adjusted.folder}" in adjusted.stdout


def test_tuning_reads_the_validation_split_only(adjusted):
    from trainer.config import TrainConfig
    from trainer.data.splits import prepare_run

    meta = json.loads((adjusted.source / "metadata.json").read_text())
    prep = prepare_run(TrainConfig.from_json(json.dumps(meta["training"])))
    val = {im.tobytes() for im in prep.splits["val"].images}
    test = {im.tobytes() for im in prep.splits["test"].images}
    seen = [im for batch in adjusted.calls for im in batch]
    assert len(seen) == 2 * len(val)  # each image and its mirror, once
    for im in seen:
        assert im.tobytes() in val or im[:, ::-1].tobytes() in val
        assert im.tobytes() not in test and im[:, ::-1].tobytes() not in test


def _outputs(folder: Path, x: np.ndarray) -> np.ndarray:
    sig = tf.saved_model.load(str(folder)).signatures["serving_default"]
    return next(iter(sig(tf.constant(x)).values())).numpy()


def test_export_is_the_source_reweighted_and_the_service_serves_it(tiny_model, tmp_path):
    from service.model.runtime import make_classifier
    from trainer.contract import ModelContract
    from trainer.export import base_contract, export

    source = copy_tree(tiny_model, tmp_path / "source")
    contract = ModelContract.read(source)
    x = np.random.default_rng(4).integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    base = base_contract("emotion", 1, contract.labels, 48)
    final = export(PriorAdjusted(source, contract, OFFSETS), tmp_path / "models", base, x)

    def want(images: np.ndarray) -> np.ndarray:
        q = _outputs(source, images) * np.exp(OFFSETS)
        return q / q.sum(axis=1, keepdims=True)

    got = _outputs(final, x)
    np.testing.assert_allclose(got, want(x), atol=1e-5)
    assert np.abs(got - _outputs(source, x)).max() > 1e-3
    served = (want(x) + want(x[:, :, ::-1])) / 2  # the service's flip TTA
    shutil.rmtree(source)  # self-contained: the source's weights are inside the export
    for runtime in RUNTIMES:
        clf = make_classifier(tmp_path / "models" / "emotion", runtime, precision="f32")
        assert clf.ready and clf.version == "1", clf.error
        probs = clf.predict(x)
        np.testing.assert_allclose(probs, served, atol=1e-5, err_msg=runtime)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5, err_msg=runtime)


def test_an_interrupted_export_leaves_no_folder(tiny_model, tmp_path, monkeypatch, capsys):
    from trainer import report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "model_card", interrupted)
    models = tmp_path / "models"
    assert main(["adjust", str(tiny_model), "--models-dir", str(models), "--rounds", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not list((models / "emotion").iterdir())


# --also: offsets chosen on the validation split and a second set (tw-posed's face crops).


def test_a_second_set_pulls_the_offsets_by_its_weight():
    # The validation split is unbiased; the second set is read with neutral far too high
    # (the version-6 habit on posed faces): its share of the objective decides how much
    # of that bias the offsets undo.
    val = _biased(np.zeros(7), n=1400)
    posed = _biased(np.array([0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0]), n=1400, seed=1)
    alone = search_offsets(val, Search())
    shared = search_offsets(val, Search(also="x", also_weight=0.5), posed)
    assert abs(alone[4] - alone.mean()) < 0.3
    assert shared[4] - np.delete(shared, 4).mean() < -0.7
    before, after = scores(posed, np.stack([alone, shared]), "accuracy")
    assert after > before + 0.05
    gain = held_out_gain(val, Search(also="x", also_weight=0.5), posed)
    assert gain["mean"] < 0.01  # measured on the validation halves: no gain there


@pytest.mark.parametrize(
    "option, message",
    [
        (["--also-weight", "0.5"], "--also-weight needs --also CROPS.npz"),
        (["--also", "x.npz", "--also-weight", "1"], "--also-weight must be in [0, 1)"),
    ],
)
def test_bad_second_set_options_exit_2(tmp_path, capsys, option, message):
    rc = main(["adjust", str(tmp_path), *option, "--models-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def _crops(path: Path, n: int = 70, size: int = 48, classes=None) -> Path:
    rng = np.random.default_rng(5)
    np.savez(
        path,
        images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        labels=np.arange(n) % 7,
        classes=np.array(classes or CLASSES),
        rater_agree=np.ones(n, bool),
    )  # fmt: skip
    return path


def test_crops_of_other_classes_or_sizes_are_refused(tmp_path):
    from trainer.adjust import read_crops

    labels = CLASSES
    assert len(read_crops(_crops(tmp_path / "ok.npz"), labels, 48)) == 70
    with pytest.raises(TrainerError, match="save them again with this model"):
        read_crops(_crops(tmp_path / "big.npz", size=96), labels, 48)
    with pytest.raises(TrainerError, match="are not the model's"):
        read_crops(_crops(tmp_path / "c.npz", classes=[*labels[:6], "contempt"]), labels, 48)
    (tmp_path / "bad.npz").write_text("no")
    with pytest.raises(TrainerError, match="not a crops file of bench.cross_dataset"):
        read_crops(tmp_path / "bad.npz", labels, 48)


def test_adjust_with_a_second_set_says_so_in_metadata_and_card(tiny_model, tmp_path):
    crops = _crops(tmp_path / "posed.npz")
    source = copy_tree(tiny_model, tmp_path / "source" / "emotion" / "1")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["adjust", str(source), "--models-dir", str(tmp_path / "models"),
                   "--also", str(crops), "--also-weight", "0.4"])  # fmt: skip
    assert rc == 0, out.getvalue()
    folder = tmp_path / "models" / "emotion" / "1"
    adj = json.loads((folder / "metadata.json").read_text())["adjustment"]
    assert adj["also"]["crops"] == str(crops) and adj["also"]["weight"] == 0.4
    assert adj["also"]["images"] == 70 and adj["search"]["also_weight"] == 0.4
    assert adj["tuned_on"] == f"validation split, flip TTA; and {crops}"
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"validation split (0.6 of the objective) and the face crops of `{crops}`" in card
    assert "| macro recall |" in card and "validation split only" not in card
