"""An ONNX expression model as a teacher (trainer/distillation/face_teacher.py): faces
aligned on YuNet's landmarks, outputs cached by image, mixed with an exported teacher's by
``distill``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SHARED, YUNET

RAFDB = SHARED / "pretrained" / "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"
FER = SHARED / "data" / "fer2013"
needs_teacher = pytest.mark.skipif(
    not (RAFDB.is_file() and YUNET.is_file() and FER.is_dir()),
    reason="the RAF-DB model, YuNet and FER2013 from ../shared",
)


@pytest.fixture(scope="module")
def fer_faces() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """120 FER+ PublicTest faces at 96 px (a fixed random draw), their labels and hashes."""
    from trainer.data.splits import evaluation_set

    es = evaluation_set(FER, 96, labels=FER / "ferplus.csv", label_column="ferplus_label",
                        split="val")  # fmt: skip
    idx = np.random.default_rng(0).permutation(len(es.y))[:120]
    hashes = [f"h{i}" for i in idx]
    return es.images[idx], es.y[idx], hashes


@needs_teacher
def test_the_rafdb_teacher_reads_fer2013_faces_once_aligned(fer_faces):
    from trainer.distillation.face_teacher import AlignedFaceTeacher

    images, y, _ = fer_faces
    teacher = AlignedFaceTeacher(RAFDB, YUNET, 7)
    out = teacher.predict(images)
    assert out.found.mean() > 0.9  # YuNet at 192 px finds ~99% of them
    np.testing.assert_allclose(out.probs.sum(axis=1), 1, atol=1e-5)
    # Zero-shot it is 72.5% on PrivateTest (../shared/README); 62.5% on these 120. A
    # teacher fed faces it cannot read (landmarks swapped, channels wrong) falls to chance.
    assert (out.probs.argmax(1) == y).mean() > 0.55


@needs_teacher
def test_outputs_are_cached_by_image_and_computed_once(fer_faces, tmp_path, monkeypatch):
    import trainer.distillation.face_teacher as ft

    images, _, hashes = fer_faces
    first = ft.teacher_outputs(RAFDB, YUNET, images[:30], hashes[:30], tmp_path, 7)
    cache = ft.cache_path(tmp_path, RAFDB)
    assert first[2]["computed"] == 30 and cache.is_file()
    written = cache.read_bytes()

    # The same images in another order, and 10 new ones: only the new ones are computed.
    calls = []
    real = ft.AlignedFaceTeacher.predict

    def counted(self, x):
        calls.append(len(x))
        return real(self, x)

    monkeypatch.setattr(ft.AlignedFaceTeacher, "predict", counted)
    order = list(range(29, -1, -1)) + list(range(30, 40))
    again = ft.teacher_outputs(RAFDB, YUNET, images[order], [hashes[i] for i in order], tmp_path, 7)
    assert calls == [10] and again[2]["cached"] == 30
    np.testing.assert_allclose(again[0][:30], first[0][::-1], atol=2e-3)  # float16 in the cache
    np.testing.assert_allclose(again[0].sum(axis=1), 1, atol=1e-6)

    # Everything cached: the teacher is not even compiled.
    monkeypatch.setattr(ft, "AlignedFaceTeacher", None)
    ft.teacher_outputs(RAFDB, YUNET, images[:30], hashes[:30], tmp_path, 7)
    assert cache.read_bytes() != written  # the 10 added earlier
    ft.write_cache(cache, ft.read_cache(cache))
    assert ft.read_cache(cache).keys() == set(hashes[:40])


def test_a_broken_cache_is_refused_with_what_to_do(tmp_path):
    from trainer.distillation.face_teacher import read_cache
    from trainer.errors import TrainerError

    bad = tmp_path / "t.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(TrainerError, match="not a readable teacher cache .*delete it"):
        read_cache(bad)


@needs_teacher
@pytest.mark.slow
def test_distill_mixes_an_exported_and_an_onnx_teacher(tiny_model, tiny_data, tmp_path):
    from tests.conftest import TINY_ARGS
    from trainer.cli import main
    from trainer.data.splits import prepare_run
    from trainer.distillation.face_teacher import cache_path, read_cache
    from trainer.evaluate import load_exported

    work = tmp_path / "w"
    args = ["distill", str(tiny_data), *TINY_ARGS, "--stage2-epochs", "1"]
    args += ["--teacher", str(tiny_model), "--teacher-weight", "0.3"]
    args += ["--teacher", str(RAFDB), "--teacher-weight", "0.2"]
    args += ["--teacher-cache", str(tmp_path / "cache"), "--run-dir", str(work / "run")]
    assert main([*args, "--models-dir", str(work / "models")]) == 0

    meta = json.loads((work / "models" / "emotion" / "1" / "metadata.json").read_text())
    d = meta["distillation"]
    exported, onnx = d["teachers"]
    assert (exported["weight"], onnx["weight"], d["label_weight"]) == (0.3, 0.2, 0.5)
    assert onnx["file"] == str(RAFDB) and onnx["mode"] == "cached"
    assert set(onnx["metrics"]) == {"val"} and onnx["aligned_by"] == str(YUNET)
    card = (work / "models" / "emotion" / "1" / "MODEL_CARD.md").read_text()
    assert "0.5 x the labels + 0.3 x teacher 1 + 0.2 x teacher 2" in card
    assert f"`{RAFDB}` (ONNX" in card

    # The cache holds every image of every split, by pixel hash; the train targets the
    # student saw are the mix (checked on the run's own splits, rebuilt).
    cache = read_cache(cache_path(tmp_path / "cache", RAFDB))
    from trainer.config import TrainConfig

    cfg = TrainConfig.from_json((work / "run" / "config.json").read_text())
    prep = prepare_run(cfg)
    train = prep.splits["train"]
    assert {h for s in prep.splits.values() for h in s.hashes} <= cache.keys()
    onnx_p = np.stack([(cache[h][0] + cache[h][1]) / 2 for h in train.hashes]).astype(np.float64)
    onnx_p /= onnx_p.sum(axis=1, keepdims=True)
    tiny_p = load_exported(tiny_model).predict(train.images, flip_tta=True)
    expected = 0.5 * train.targets + 0.3 * tiny_p + 0.2 * onnx_p

    from trainer.distillation.distill import distill, open_teachers

    distill(cfg, open_teachers(cfg, prep.classes), work / "run", prep)
    np.testing.assert_allclose(train.targets, expected, atol=1e-4)  # float16 in the cache
