"""``python -m trainer distill``: targets, export, resume with the cached teacher, the online
teacher (OpenVINO on every augmented batch), bad options."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSES, ROOT, TINY_ARGS
from trainer.cli import main

# Every appearance option on, so the student's real training loop runs each new layer.
APPEARANCE = ["--brightness", "0.1", "--contrast", "0.2", "--gamma", "0.3", "--blur", "0.5"]
APPEARANCE += ["--low-res", "0.3", "--noise", "4"]


def _distill_args(data: Path, teacher: Path, work: Path, *extra: str) -> list[str]:
    return [
        "distill",
        str(data),
        *TINY_ARGS,
        "--stage2-epochs",
        "1",
        "--teacher",
        str(teacher),
        "--run-dir",
        str(work / "run"),
        "--models-dir",
        str(work / "models"),
        *extra,
    ]


@pytest.fixture(scope="module")
def distilled(tiny_model, tiny_data, tmp_path_factory) -> Path:
    """A distill run (its folder holds run/ and models/emotion/1) from the tiny model."""
    work = tmp_path_factory.mktemp("distill")
    assert main(_distill_args(tiny_data, tiny_model, work, *APPEARANCE)) == 0
    return work


@pytest.mark.slow
def test_distill_exports_a_version_that_names_its_teacher(distilled, tiny_model):
    out = distilled / "models" / "emotion" / "1"
    meta = json.loads((out / "metadata.json").read_text())
    teacher_meta = json.loads((tiny_model / "metadata.json").read_text())
    d = meta["distillation"]
    (t,) = d["teachers"]
    assert t["folder"] == str(tiny_model) and t["version"] == 1
    assert t["metrics"]["val"] == {
        k: teacher_meta["metrics"]["val"][k] for k in ("accuracy", "macro_f1")
    }
    assert (t["weight"], d["label_weight"], d["temperature"], d["teacher_tta"]) == (
        0.5, 0.5, 1.0, True
    )  # fmt: skip
    assert t["mode"] == "cached" and meta["training"]["teacher_mode"] == "cached"
    assert t["seconds"] >= 0 and 0 <= t["train_agreement"] <= 1
    assert meta["training"]["teacher"] == [str(tiny_model)]
    assert meta["training"]["blur"] == 0.5 and meta["training"]["noise"] == 4.0
    assert set(meta["metrics"]) == {"val", "test"}  # evaluated like any trained export
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Distillation" in card and str(tiny_model) in card
    assert "0.5 x the labels + 0.5 x teacher 1" in card
    assert "blur p 0.5" in card and "noise std up to 4.0" in card


@pytest.mark.slow
def test_train_targets_are_the_mix_of_labels_and_softened_teacher(tiny_model, tiny_data, tmp_path):
    from trainer.config import make_config
    from trainer.data.splits import prepare_run
    from trainer.distillation.distill import distill, open_teachers
    from trainer.evaluate import load_exported

    def targets(weight: float, temperature: float) -> tuple[np.ndarray, np.ndarray, dict]:
        cfg = make_config(
            "finetune",
            data=str(tiny_data),
            base_weights="none",
            input_size=48,
            teacher=str(tiny_model),
            teacher_weight=weight,
            temperature=temperature,
        )
        prep = prepare_run(cfg)
        labels = prep.splits["train"].targets.copy()
        distill(cfg, open_teachers(cfg, prep.classes), tmp_path, prep)
        return labels, prep.splits["train"].targets, prep.splits

    labels, got, splits = targets(1.0, 1.0)
    images = splits["train"].images
    teacher = load_exported(tiny_model).predict(images, flip_tta=True)
    np.testing.assert_allclose(got, teacher, atol=1e-6)  # the flip-averaged teacher itself
    # Validation and test targets stay the labels (one-hot here).
    for name in ("val", "test"):
        np.testing.assert_array_equal(splits[name].targets.argmax(1), splits[name].labels)
        assert set(np.unique(splits[name].targets)) == {0.0, 1.0}

    # Second run in the same folder: from the cache, mixed at weight 0.3, temperature 2.
    labels, got, _ = targets(0.3, 2.0)
    soft = np.sqrt(teacher) / np.sqrt(teacher).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, 0.7 * labels + 0.3 * soft, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_resume_reads_the_cached_teacher_instead_of_running_it(
    distilled, tmp_path, monkeypatch, capsys
):
    run = shutil.copytree(distilled / "run", tmp_path / "run")
    cache = run / "teacher.npz"
    before = cache.stat().st_mtime_ns
    out = _resume_without_the_tensorflow_teacher(run, tmp_path / "models", monkeypatch, capsys)
    assert f"teacher outputs read from {cache}" in out
    assert cache.stat().st_mtime_ns == before
    meta = json.loads((tmp_path / "models" / "emotion" / "1" / "metadata.json").read_text())
    first = json.loads((distilled / "models" / "emotion" / "1" / "metadata.json").read_text())
    assert meta["distillation"] == first["distillation"]


def _resume_without_the_tensorflow_teacher(run: Path, models: Path, monkeypatch, capsys) -> str:
    """``distill --resume RUN``, failing if the teacher is run through TensorFlow (the
    cached mode's pass over the training images); returns what the run printed."""
    import trainer.distillation.distill

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was run through TensorFlow on resume")

    monkeypatch.setattr(trainer.distillation.distill, "load_exported", no_teacher)
    rc = main(["distill", "--resume", str(run), "--models-dir", str(models)])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


@pytest.mark.slow
def test_resume_refuses_a_teacher_cache_of_other_images(distilled, tmp_path, capsys):
    run = shutil.copytree(distilled / "run", tmp_path / "run")
    cache = run / "teacher.npz"
    with np.load(cache) as f:
        cached = {k: f[k] for k in f.files}
    cached["hashes"] = cached["hashes"][::-1]  # the same images in another order
    with cache.open("wb") as f:
        np.savez(f, **cached)
    rc = main(["distill", "--resume", str(run), "--models-dir", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert rc == 2 and "holds teacher outputs for other images" in err
    assert f"delete {cache}" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()


def _fake_teacher(folder: Path, labels: list[str], size: int) -> Path:
    """A version folder with only the contract files (no SavedModel): what the options
    are checked against."""
    from trainer.contract import ModelContract

    folder.mkdir(parents=True)
    ModelContract.new("emotion", 9, labels, size).write(folder)
    return folder


@pytest.mark.parametrize(
    "options, message",
    [
        (["--teacher-weight", "1.5"], "--teacher-weight: each must be >= 0 and together at most 1"),
        (
            ["--teacher", "{teacher}", "--teacher-weight", "0.6", "--teacher", "{teacher}"],
            "give one --teacher-weight per --teacher",
        ),
        (["--teacher", "{teacher}", "--teacher", "{teacher}"], "give one --teacher-weight per"),
        (
            [
                "--teacher",
                "{teacher}",
                "--teacher-weight",
                "0.6",
                "--teacher",
                "{onnx}",
                "--teacher-weight",
                "0.5",
            ],
            "together at most 1",
        ),  # fmt: skip
        (["--teacher", "{tmp}/none.onnx"], "--teacher {tmp}/none.onnx: no such file"),
        (["--teacher", "{onnx}"], "aligns faces on YuNet's landmarks: no YuNet model beside"),
        (
            ["--teacher", "{onnx}", "--yunet", "{tmp}/yunet.onnx"],
            "no YuNet model {tmp}/yunet.onnx (give --yunet PATH)",
        ),
        (
            ["--teacher", "{onnx_with_yunet}", "--teacher-mode", "online"],
            "--teacher-mode online needs an exported version as --teacher",
        ),
        (["--temperature", "0"], "--temperature must be positive"),
        (
            ["--teacher", "{tmp}/nothing"],
            "--teacher {tmp}/nothing: not an exported model version (no metadata.json)",
        ),
        (["--teacher", "{teacher64}"], "its input is 64 px, the student's 48 px"),
        (["--teacher", "{other_labels}"], "differ from the data's classes"),
        ([], "distill needs --teacher"),
        (
            ["--teacher", "{teacher}", "--teacher-mode", "online"],
            "--teacher {teacher}: OpenVINO cannot read it for --teacher-mode online",
        ),
        (["--teacher-view", "framed"], "--teacher-view framed needs --teacher-mode online"),
    ],
)
def test_bad_distill_options_exit_2_before_the_run_starts(
    tiny_data, tmp_path, capsys, options, message
):
    teachers = {
        "tmp": tmp_path,
        "teacher64": _fake_teacher(tmp_path / "t64", sorted(CLASSES), 64),
        "other_labels": _fake_teacher(tmp_path / "t7", [*sorted(CLASSES)[:6], "contempt"], 48),
        "teacher": _fake_teacher(tmp_path / "ok", sorted(CLASSES), 48),
        "onnx": _touch(tmp_path / "alone" / "model.onnx"),
        "onnx_with_yunet": _touch(tmp_path / "pair" / "model.onnx"),
    }
    _touch(tmp_path / "pair" / "face_detection_yunet_2023mar.onnx")
    options, message = [o.format(**teachers) for o in options], message.format(**teachers)
    if "--teacher" not in options and options:
        options += ["--teacher", str(teachers["teacher"])]
    args = ["distill", str(tiny_data), *TINY_ARGS, "--run-dir", str(tmp_path / "run"), *options]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing started


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_distill_resume_refuses_a_train_run(tmp_path, capsys):
    from trainer.config import TrainConfig

    (tmp_path / "config.json").write_text(TrainConfig(data="x").to_json())
    rc = main(["distill", "--resume", str(tmp_path)])
    assert rc == 2 and "a train run, not a distill run" in capsys.readouterr().err


def test_reading_a_run_folder_does_not_load_tensorflow():
    # distill --resume checks the run's config.json before anything heavy is loaded.
    code = "import sys, trainer.run_folder; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_distill_takes_every_train_option():
    from trainer.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command").choices

    def options(name: str) -> set[str]:
        return {o for a in sub[name]._actions for o in a.option_strings}

    teacher = {"--teacher", "--teacher-weight", "--temperature", "--teacher-mode", "--teacher-view"}
    teacher |= {"--teacher-tta", "--no-teacher-tta", "--yunet", "--teacher-cache"}
    assert options("distill") == options("train") | teacher


# --teacher-mode online: the teacher on OpenVINO, run on every augmented batch.


@pytest.mark.parametrize("view", ["augmented", "framed"])
def test_online_targets_are_the_teacher_on_each_augmented_batch(view):
    """The pipeline piece alone: the targets of every batch are its own labels mixed with
    the teacher's output on exactly the augmented images the batch yields, or with
    ``--teacher-view framed`` on those images as framed, before appearance and erasing."""
    import tensorflow as tf

    from trainer.config import TrainConfig
    from trainer.data.input_pipeline import train_dataset
    from trainer.data.splits import Split
    from trainer.distillation.distill import online_targets

    n, size, classes = 40, 8, 7
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (n, size, size, 3), dtype=np.uint8)
    # Each image carries its index in one pixel the augmentation leaves alone, so that a
    # yielded image can be matched with its own labels and sample weight.
    images[:, 0, 0, 0] = np.arange(n)
    keep = np.ones((size, size, 3), np.float32)
    keep[0, 0, 0] = 0
    labels = rng.integers(0, classes, n).astype(np.int32)
    votes = rng.dirichlet(np.ones(classes), n).astype(np.float32)
    weights = {c: 1.0 + c for c in range(classes)}

    def augment(x, training):  # every other pixel brightened by a random amount per image
        return x + tf.random.uniform([tf.shape(x)[0], 1, 1, 1], 1, 50) * keep

    def framing(x, training):  # kept pixels halved, run before augment when framed
        return x * (1 - 0.5 * keep)

    def framed(x: np.ndarray) -> np.ndarray:  # as the pipeline rounds it (half to even)
        return np.round(x * (1 - 0.5 * keep)).astype(np.uint8)

    def teacher(x: np.ndarray) -> np.ndarray:  # depends on the pixels and on left or right
        left = x[:, :, : size // 2].mean(axis=(1, 2, 3))
        right = x[:, :, size // 2 :].mean(axis=(1, 2, 3))
        logits = np.outer(left, np.linspace(0, 1, classes)) / 20
        logits += np.outer(right, np.linspace(1, 0, classes)) / 40
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def expected(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        # Mirror-averaged, softened at T = 2 (square root, renormalised), 0.3 of the target.
        p = np.sqrt((teacher(x) + teacher(x[:, :, ::-1])) / 2)
        return 0.7 * votes[idx] + 0.3 * p / p.sum(axis=1, keepdims=True)

    cfg = TrainConfig(teacher="t", teacher_weight=0.3, temperature=2.0, teacher_tta=True)
    targets = online_targets([(teacher, 0.3)], cfg)
    seen = []
    ds = train_dataset(
        Split(images, labels, votes, []),
        16,
        1,
        augment,
        weights,
        targets,
        framing if view == "framed" else None,
    )
    for x, y, w in ds:
        x, y, w = x.numpy(), y.numpy(), w.numpy()
        idx = x[:, 0, 0, 0].astype(int)
        shown, other = (framed(images[idx]), x) if view == "framed" else (x, framed(images[idx]))
        np.testing.assert_allclose(y, expected(shown, idx), atol=1e-6)
        # The same check fails with the teacher shown the other image.
        assert np.abs(y - expected(other, idx)).max() > 1e-3
        if view == "framed":  # the student is fed the framed image, then augmented:
            added = (x.astype(int) - framed(images[idx]))[:, keep > 0]  # one shift per image
            assert (added == added[:, :1]).all() and (added >= 1).all()
        np.testing.assert_array_equal(w, [weights[c] for c in labels[idx]])
        seen += idx.tolist()
    assert sorted(seen) == list(range(n))  # every image once, each with its own targets


@pytest.mark.slow
def test_openvino_teacher_gives_the_savedmodels_probabilities(tiny_model):
    from trainer.contract import ModelContract
    from trainer.distillation.teacher_runtime import load_teacher
    from trainer.evaluate import load_exported

    contract = ModelContract.read(tiny_model)
    x = np.random.default_rng(0).integers(0, 256, (9, 48, 48, 3), dtype=np.uint8)
    teacher = load_teacher(tiny_model, contract, precision="f32")
    exported = load_exported(tiny_model)
    for batch in (x, x[:, :, ::-1], x[:1]):
        np.testing.assert_allclose(teacher.infer(batch), exported.predict(batch), atol=1e-4)
    assert (teacher.describe()["name"], teacher.describe()["precision"]) == ("openvino", "f32")


@pytest.fixture(scope="module")
def online_distilled(tiny_model, tiny_data, tmp_path_factory) -> Path:
    """A distill run with the online teacher shown the framed images, every augmentation on
    (run/ and models/emotion/1)."""
    work = tmp_path_factory.mktemp("online")
    online = ["--teacher-mode", "online", "--teacher-view", "framed", "--erasing", "0.5"]
    args = _distill_args(tiny_data, tiny_model, work, *online, *APPEARANCE)
    assert main(args) == 0
    return work


def _cpu_precision() -> str:
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps else "f32"


@pytest.mark.slow
def test_online_distill_exports_a_version_that_says_how_its_teacher_ran(
    online_distilled, tiny_model
):
    import openvino as ov

    out = online_distilled / "models" / "emotion" / "1"
    meta = json.loads((out / "metadata.json").read_text())
    d = meta["distillation"]
    (t,) = d["teachers"]
    assert t["mode"] == "online" and meta["training"]["teacher_mode"] == "online"
    assert t["view"] == "framed" and t["folder"] == str(tiny_model)
    runtime = dict(t["runtime"])
    assert runtime.pop("threads") >= 1  # OpenVINO's default: one per core
    assert runtime == {
        "name": "openvino",
        "version": ov.get_version(),
        "precision": _cpu_precision(),
    }
    assert "seconds" not in t  # nothing computed before training
    assert set(meta["metrics"]) == {"val", "test"}
    assert not (online_distilled / "run" / "teacher.npz").exists()  # no cache online
    card = (out / "MODEL_CARD.md").read_text()
    assert "0.5 x the labels + 0.5 x teacher 1" in card
    assert "run on every training batch as framed (the augmentation's flip" in card
    runtime = f"openvino {ov.get_version()}, {_cpu_precision()}"
    assert f"teacher mode `online`, view `framed`: {runtime}" in card


@pytest.mark.slow
def test_online_run_resumes_after_sigkill_with_the_online_teacher(
    tiny_model, tiny_data, tmp_path, monkeypatch, capsys, killed_in_stage_2
):
    args = _distill_args(tiny_data, tiny_model, tmp_path, "--teacher-mode", "online")
    args += ["--stage2-epochs", "12", "--early-stopping", "0"]
    run = tmp_path / "run"
    done = killed_in_stage_2(args, run, tmp_path / "first.log")["epoch"]
    out = _resume_without_the_tensorflow_teacher(run, tmp_path / "models", monkeypatch, capsys)
    assert f"teacher {tiny_model} on OpenVINO" in out and "every augmented training batch" in out
    assert f"resuming {run}: stage 2, {done} epoch(s) done" in out
    assert f"stage 2 epoch {done + 1}/12" in out
    assert not (run / "teacher.npz").exists()
    meta = json.loads((tmp_path / "models" / "emotion" / "1" / "metadata.json").read_text())
    (t,) = meta["distillation"]["teachers"]
    assert (t["mode"], t["view"]) == ("online", "augmented")
    assert [h["epoch"] for h in meta["history"] if h["stage"] == 2] == list(range(1, 13))
    card = (tmp_path / "models" / "emotion" / "1" / "MODEL_CARD.md").read_text()
    assert "run on every augmented training batch, on the very images" in card


def test_a_resumed_run_keeps_its_teacher_mode(tmp_path, capsys):
    from trainer.config import TrainConfig

    cfg = TrainConfig(data="x", teacher="t", teacher_mode="online")
    (tmp_path / "config.json").write_text(cfg.to_json())
    rc = main(["distill", "--resume", str(tmp_path), "--teacher-mode", "cached"])
    err = capsys.readouterr().err
    assert rc == 2 and "--teacher-mode cached (the run's: online)" in err


@pytest.mark.parametrize("command", ["train", "distill"])
def test_a_resumed_run_refuses_other_options_instead_of_ignoring_them(
    tmp_path, capsys, monkeypatch, command
):
    from trainer.config import TrainConfig

    cfg = TrainConfig(data=str(tmp_path / "data"), teacher="t", stage2_epochs=20, init_from="v/5")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(cfg.to_json())
    run = str(tmp_path / "run")
    argv = [command, str(tmp_path / "other"), "--resume", run, "--stage2-epochs", "30", "--flip"]
    argv += ["--no-soft-labels", "--init-from", "v/6", "--no-drop-blank", "--recipe", "notebook"]
    rc = main([*argv, "--name", "./emotion"])
    err = capsys.readouterr().err
    assert rc == 2 and "a resumed run keeps its own" in err
    for named in [
        "DATA",
        "--stage2-epochs 30 (the run's: 20)",
        "--init-from v/6 (the run's: v/5)",
        "--recipe notebook (the run's: finetune)",
        "--name ./emotion (the run's: emotion)",  # not a path: spelled otherwise, another
    ]:
        assert named in err
    assert "--flip" not in err and "--soft-labels" not in err  # the run's own values
    assert "--drop-blank" not in err  # the run's own value (False) too

    rc = main([command, "--resume", run, "--drop-blank", "--no-flip"])
    err = capsys.readouterr().err
    assert "--drop-blank (the run's: --no-drop-blank)" in err
    assert "--no-flip (the run's: --flip)" in err

    rc = main([command, "--resume", run, "--run-dir", str(tmp_path / "elsewhere")])
    assert rc == 2 and "a resumed run stays in its own folder" in capsys.readouterr().err

    # The same values, however the paths are spelled, pass the check: the run then fails
    # further on, on its data folder (none here), not on its options.
    monkeypatch.chdir(tmp_path)
    same = [command, "data", "--resume", "run", "--stage2-epochs", "20", "--init-from", "./v/5"]
    rc = main([*same, "--recipe", "finetune"])
    err = capsys.readouterr().err
    assert rc != 0 and "a resumed run keeps its own" not in err and "data folder" in err
