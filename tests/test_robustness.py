"""bench.robustness: the perturbations do what their names say, and the table adds up."""

from __future__ import annotations

import json
import math
import re

import cv2
import numpy as np
import pytest

from bench import perturbations
from bench.perturbations import CLEAN, PERTURBATIONS, apply, select
from bench.robustness import main, markdown, measure, spread, table_rows, to_json
from tests.conftest import CLASSES, ROOT, SHARED

NAMES = list(PERTURBATIONS)
CHANGING = [n for n in NAMES if n != CLEAN]
RANDOM = ["rotate-15deg", "jitter-15pct", "noise-std15"]
GEOMETRIC = ["rotate-15deg", "jitter-15pct"]


def faces(n: int = 6, size: int = 96, low: int = 40, high: int = 215, seed: int = 0):
    """Textured gray faces made as the trainer makes them: 48 px, upscaled, three channels."""
    rng = np.random.default_rng(seed)
    small = rng.integers(low, high + 1, (n, 48, 48), dtype=np.uint8)
    big = [cv2.resize(s, (size, size), interpolation=cv2.INTER_LINEAR) for s in small]
    return np.repeat(np.stack(big)[..., None], 3, axis=3)


def detail(images: np.ndarray) -> float:
    """High-frequency energy: the variance of the Laplacian of the gray channel."""
    return float(np.mean([cv2.Laplacian(im[..., 0].astype(np.float32), -1).var() for im in images]))


def blob(size: int, row: float, col: float, n: int = 1) -> np.ndarray:
    """Mid-gray faces with one bright spot at (row, col)."""
    r, c = np.mgrid[:size, :size]
    spot = 128 + 127 * np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * 2.0**2))
    gray = np.rint(spot).astype(np.uint8)
    return np.repeat(np.repeat(gray[None, ..., None], 3, axis=3), n, axis=0)


def centroid(image: np.ndarray) -> tuple[float, float]:
    w = np.clip(image[..., 0].astype(np.float64) - 160, 0, None)
    r, c = np.mgrid[: image.shape[0], : image.shape[1]]
    return float((w * r).sum() / w.sum()), float((w * c).sum() / w.sum())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [48, 96])
def test_perturbation_keeps_shape_dtype_gray_and_its_input(name, size):
    x = faces(size=size)
    before = x.copy()
    out = apply(name, x, seed=1)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(x, before), "the input was modified"


@pytest.mark.parametrize("name", NAMES)
def test_perturbation_is_repeatable_for_a_seed(name):
    x = faces()
    assert np.array_equal(apply(name, x, seed=5), apply(name, x, seed=5))


@pytest.mark.parametrize("name", RANDOM)
def test_random_perturbation_follows_the_seed(name):
    x = faces()
    assert not np.array_equal(apply(name, x, seed=5), apply(name, x, seed=6))


@pytest.mark.parametrize("name", CHANGING)
def test_perturbation_changes_every_image(name):
    x = faces()
    out = apply(name, x)
    changed = (out != x).reshape(len(x), -1).any(axis=1)
    assert changed.all(), f"{name} left {int((~changed).sum())} images untouched"


def test_clean_is_the_images_themselves():
    x = faces()
    out = apply(CLEAN, x)
    assert np.array_equal(out, x) and out is not x


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("occlude")])
@pytest.mark.parametrize("size", [48, 96])
def test_occlusion_band_covers_the_rows_its_name_claims(name, size):
    top, bottom = (int(v) / 100 for v in re.search(r"(\d+)-(\d+)pct", name).groups())
    x = faces(size=size)
    out = apply(name, x)
    filled = [r for r in range(size) if (out[:, r] == perturbations.MID_GRAY).all()]
    changed = [r for r in range(size) if (out[:, r] != x[:, r]).any()]
    assert filled == changed == list(range(filled[0], filled[-1] + 1))
    assert abs(filled[0] - top * size) <= 1 and abs(filled[-1] + 1 - bottom * size) <= 1


def test_low_resolution_and_blur_remove_detail():
    x = faces()
    clean = detail(x)
    lowres24, lowres32 = detail(apply("lowres-24px", x)), detail(apply("lowres-32px", x))
    assert lowres24 < lowres32 < 0.8 * clean
    assert lowres24 < 0.5 * clean
    assert detail(apply("blur-sigma1.5", x)) < 0.5 * clean


def test_blur_is_the_same_at_every_input_size():
    # sigma is quoted at 48 px: the 96-px blur, shrunk, matches the 48-px one.
    x48 = faces(size=48)
    x96 = np.stack([cv2.resize(im, (96, 96), interpolation=cv2.INTER_LINEAR) for im in x48])
    small = apply("blur-sigma1.5", x48).astype(int)
    big = np.stack(
        [
            cv2.resize(im, (48, 48), interpolation=cv2.INTER_AREA)
            for im in apply("blur-sigma1.5", x96)
        ]
    )
    assert np.abs(small - big).mean() < 3
    assert np.abs(small - x48).mean() > 10


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_perturbations_fill_the_border(name):
    x = faces(n=32, low=100, high=200)
    out = apply(name, x)
    # Replicated edges stay within the image's own values: no black (or any new) corners.
    assert out.min() >= 100 and out.max() <= 200


def test_rotation_turns_each_face_15_degrees_either_way():
    size = 96
    c = (size - 1) / 2
    out = apply("rotate-15deg", blob(size, c - 30, c, n=24))
    angles = []
    for im in out:
        r, col = centroid(im)
        angles.append(math.degrees(math.atan2(col - c, c - r)))
    assert all(abs(abs(a) - 15) < 1.5 for a in angles), angles
    assert min(angles) < 0 < max(angles), "every face turned the same way"


def test_box_jitter_moves_the_face_by_at_most_15_percent():
    size = 96
    c = (size - 1) / 2
    out = apply("jitter-15pct", blob(size, c, c, n=32))
    offsets = np.array([np.subtract(centroid(im), c) for im in out])
    # The box centre moves by up to 15% of the side; the re-sampled crop shows it 1/scale
    # times larger, scale down to 0.85.
    assert np.abs(offsets).max() <= 0.15 * size / 0.85 + 0.5
    assert np.abs(offsets).max() > 0.08 * size, "the crops hardly moved"


def test_select_names_full_names_and_families_in_registry_order():
    assert select(None) == CHANGING
    assert select("occlude, jpeg-q15") == [
        "jpeg-q15",
        "occlude-eyes-25-45pct",
        "occlude-mouth-65-85pct",
    ]
    assert select("lowres-24px") == ["lowres-24px"]
    with pytest.raises(ValueError, match="no perturbation 'lowres-16px'"):
        select("lowres-16px")


def test_every_perturbation_name_gives_its_parameter():
    assert all(re.search(r"\d", n) for n in CHANGING)


class ScriptedModel:
    """A fake classifier: each predict call answers the next scripted list of classes."""

    labels = CLASSES

    def __init__(self, input_size: int, answers: list[list[int]]):
        self.input_size = input_size
        self.answers = list(answers)
        self.seen: list[np.ndarray] = []

    def predict(self, faces: np.ndarray) -> np.ndarray:
        assert faces.shape[1:] == (self.input_size, self.input_size, 3)
        self.seen.append(faces)
        return np.eye(len(self.labels), dtype=np.float32)[self.answers.pop(0)]


def wrong(y: np.ndarray, n: int) -> list[int]:
    """``y`` with its first ``n`` answers replaced by class 2 (never a true class here)."""
    return [2] * n + list(y[n:])


Y = np.array([0] * 5 + [1] * 5)
ROWS = ["noise-std15", "lowres-24px"]


@pytest.fixture
def measured():
    a = ScriptedModel(16, [list(Y), wrong(Y, 2), wrong(Y, 5)])
    b = ScriptedModel(24, [wrong(Y, 1), wrong(Y, 1), wrong(Y, 4)])
    images = {16: faces(10, 16), 24: faces(10, 24)}
    return measure({"A": a, "B": b}, images, Y, ROWS, seed=3), a, b, images


def test_measure_scores_each_version_against_its_clean_accuracy(measured):
    (ra, rb), _, _, _ = measured
    assert ra.clean.accuracy == 1.0 and rb.clean.accuracy == 0.9
    assert ra.drop("noise-std15") == pytest.approx(0.2) and rb.drop("noise-std15") == 0
    assert ra.mean_accuracy() == pytest.approx(0.65) and rb.mean_accuracy() == pytest.approx(0.75)
    assert ra.worst() == ("lowres-24px", pytest.approx(0.5))
    assert rb.worst() == ("lowres-24px", pytest.approx(0.3))


def test_every_version_gets_the_same_perturbed_faces_at_its_size(measured):
    _, a, b, images = measured
    assert np.array_equal(a.seen[0], images[16]) and np.array_equal(b.seen[0], images[24])
    for i, name in enumerate(ROWS, start=1):
        assert np.array_equal(a.seen[i], apply(name, images[16], seed=3))
        assert np.array_equal(b.seen[i], apply(name, images[24], seed=3))


def test_table_shows_accuracy_change_mean_and_worst_drop(measured):
    results = measured[0]
    assert table_rows(results) == [
        ["perturbation", "A", "B"],
        ["clean", "100.0", "90.0"],
        ["noise-std15", "80.0 (-20.0)", "90.0 (+0.0)"],
        ["lowres-24px", "50.0 (-50.0)", "60.0 (-30.0)"],
        ["mean over perturbations", "65.0 (-35.0)", "75.0 (-15.0)"],
        ["worst drop", "-50.0 lowres-24px", "-30.0 lowres-24px"],
    ]
    lines = markdown(table_rows(results)).splitlines()
    assert len({len(line) for line in lines}) == 1, "columns are not aligned"
    assert lines[0].split("|")[1].strip() == "perturbation" and set(lines[1]) <= set("|-:")


def test_json_has_accuracy_macro_f1_and_drop_per_cell(measured):
    report = to_json(measured[0], {"split": "val"})
    a = report["versions"]["A"]
    assert report["split"] == "val"
    assert a["perturbations"]["noise-std15"]["accuracy"] == 0.8
    assert a["perturbations"]["noise-std15"]["drop"] == 0.2
    # The trainer's macro F1 averages all 7 classes; only 2 occur here, both perfect.
    assert a["clean"]["macro_f1"] == round(2 / 7, 4)
    assert a["worst_drop"] == {"perturbation": "lowres-24px", "drop": 0.5}


def test_limit_spreads_over_the_whole_set():
    assert spread(10, 3).tolist() == [0, 3, 6]
    assert spread(3589, 300).max() > 3500 and len(set(spread(3589, 300))) == 300
    assert spread(5, None).tolist() == spread(5, 9).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_cli_runs_a_real_model_on_a_few_faces(tmp_path, capsys):
    data = SHARED / "data" / "fer2013"
    if not (data / "ferplus.csv").is_file():
        pytest.skip("FER2013 not available")
    model = ROOT / "models" / "emotion" / "2"
    main(["--model-dir", str(model), "--limit", "40", "--only", "jpeg", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "40 images" in out and "jpeg-q15" in out
    report = json.loads((tmp_path / "robustness_val.json").read_text())
    v2 = report["versions"]["v2"]
    assert v2["clean"]["accuracy"] > 0.6 and list(v2["perturbations"]) == ["jpeg-q15"]
    assert f"{100 * v2['clean']['accuracy']:.1f}" in (tmp_path / "robustness_val.md").read_text()
