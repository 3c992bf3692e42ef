"""Appearance augmentation options: off by default, and each one does what it says when on."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import make_config
from trainer.model import augmentation

OPTIONS = {  # option -> (a setting that is on, the augmentation layer's name)
    "brightness": (0.3, "brightness"),
    "contrast": (0.5, "contrast"),
    "gamma": (1.0, "gamma"),
    "blur": (1.0, "blur"),
    "low_res": (1.0, "low_res"),
    "noise": (10.0, "noise"),
}
NO_GEOMETRY = {"flip": False, "rotation": 0.0, "shift": 0.0, "zoom": 0.0}


def _aug(**options):
    return augmentation(make_config("finetune", base_weights="none", **options), 42)


def _faces(n: int = 64, size: int = 96, seed: int = 0) -> tf.Tensor:
    """Textured gray images in three equal channels (blur and low resolution need texture)."""
    gray = np.random.default_rng(seed).integers(40, 215, (n, size, size, 1)).astype("float32")
    return tf.constant(np.repeat(gray, 3, axis=3))


@pytest.mark.parametrize("recipe", ["notebook", "finetune"])
def test_recipes_keep_every_appearance_option_off(recipe):
    cfg = make_config(recipe, base_weights="none")
    assert all(getattr(cfg, k) == 0 for k in OPTIONS)
    names = [layer.name for layer in augmentation(cfg, 1).layers]
    assert not {name for _, name in OPTIONS.values()} & set(names)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_changes_the_images_only_when_on_and_keeps_the_contract(option):
    value, name = OPTIONS[option]
    aug = _aug(**NO_GEOMETRY, **{option: value})
    assert [layer.name for layer in aug.layers] == [name]
    x = _faces()
    y = aug(x, training=True).numpy()
    assert y.shape == x.shape and y.dtype == np.float32
    changed = np.abs(y - x.numpy()).mean(axis=(1, 2, 3)) > 0.5
    assert changed.mean() > 0.5, f"{option} changed {changed.mean():.0%} of the images"
    # Still a gray face: the three channels stay equal, as the model's contract has them.
    np.testing.assert_allclose(y[..., 1:], np.repeat(y[..., :1], 2, axis=3), atol=1e-3)
    np.testing.assert_array_equal(aug(x, training=False).numpy(), x.numpy())


def test_options_run_in_the_training_pipeline_as_uint8_batches():
    from trainer.data.input_pipeline import train_dataset
    from trainer.data.splits import Split

    x = _faces(20, 48).numpy().astype(np.uint8)
    split = Split(x, np.zeros(20, np.int32), np.eye(7, dtype=np.float32)[[0] * 20], [""] * 20)
    on = {k: v for k, (v, _) in OPTIONS.items()}
    aug = augmentation(make_config("finetune", base_weights="none", input_size=48, **on), 3)
    batch = next(iter(train_dataset(split, 8, 0, aug)))[0]
    assert batch.dtype == tf.uint8 and batch.shape == (8, 48, 48, 3)


def test_blur_keeps_a_uniform_image_uniform():
    # Keras' RandomGaussianBlur pads with zeros, which darkens the borders; ours mirrors.
    y = _aug(**NO_GEOMETRY, blur=1.0)(tf.fill((8, 96, 96, 3), 128.0), training=True).numpy()
    np.testing.assert_allclose(y, 128.0, atol=1e-3)


def test_contrast_is_lowered_as_often_as_raised():
    # Keras 3's RandomContrast(f) only ever raises contrast; the option means [1-f, 1+f].
    x = _faces(256, 16)
    y = _aug(**NO_GEOMETRY, contrast=0.5)(x, training=True).numpy()
    ratio = y.std(axis=(1, 2, 3)) / x.numpy().std(axis=(1, 2, 3))
    assert 0.3 < (ratio < 1).mean() < 0.7 and ratio.min() < 0.7 and ratio.max() > 1.3


def test_low_resolution_loses_detail():
    # A one-pixel checkerboard cannot survive a trip through 24..47 px.
    board = (np.indices((48, 48)).sum(axis=0) % 2 * 200 + 20).astype("float32")
    x = tf.constant(np.repeat(np.repeat(board[None, :, :, None], 3, axis=3), 32, axis=0))
    cfg = make_config("finetune", base_weights="none", input_size=48, low_res=1.0, **NO_GEOMETRY)
    y = augmentation(cfg, 5)(x, training=True).numpy()
    detail = np.abs(np.diff(y[..., 0], axis=2)).mean(axis=(1, 2))
    assert (detail < 100).mean() > 0.8  # from 200 (all but the rare draw of 48 px itself)


def test_appearance_draws_are_independent_of_each_other():
    # Keras layers given one seed draw the same numbers: brightness and contrast would move
    # together (correlation 0.998) if they shared the run's seed.
    x = _faces(256, 16)
    aug = _aug(**NO_GEOMETRY, brightness=0.1, contrast=0.5)
    y = aug(x, training=True).numpy()
    shift = y.mean(axis=(1, 2, 3)) - x.numpy().mean(axis=(1, 2, 3))
    ratio = y.std(axis=(1, 2, 3)) / x.numpy().std(axis=(1, 2, 3))
    assert abs(np.corrcoef(shift, ratio)[0, 1]) < 0.3


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--brightness", "2", "--brightness must be in [0, 1]"),
        ("--contrast", "1.5", "--contrast must be in [0, 1]"),
        ("--gamma", "-1", "--gamma must be >= 0"),
        ("--blur", "1.5", "--blur must be a probability"),
        ("--low-res", "-0.1", "--low-res must be a probability"),
        ("--noise", "-3", "--noise must be a pixel std"),
    ],
)
def test_bad_appearance_options_exit_2(tmp_path, capsys, option, value, message):
    from trainer.cli import main

    rc = main(["train", str(tmp_path), "--base-weights", "none", option, value])
    assert rc == 2 and message in capsys.readouterr().err


def test_every_augmentation_layer_draws_from_its_own_seed():
    # Layers given one seed draw the same numbers: rotation, shift and zoom once moved
    # in lockstep because they shared the run's seed.
    from dataclasses import replace

    from trainer.config import FINETUNE
    from trainer.model import augmentation

    cfg = replace(FINETUNE, shear=0.1, erasing=0.5, blur=0.2, low_res=0.3, noise=8.0)
    seeds = [layer.seed for layer in augmentation(cfg, 42).layers]
    assert len(seeds) >= 9 and len(set(seeds)) == len(seeds), seeds


def test_the_framed_view_splits_the_very_same_augmentation():
    # --teacher-view framed: the teacher sees the first part's output, the student both.
    from dataclasses import replace

    from trainer.config import FINETUNE
    from trainer.model import training_augmentation

    cfg = replace(FINETUNE, shear=0.1, erasing=0.5, blur=0.2, low_res=0.3, noise=8.0)
    framing, rest = training_augmentation(cfg, 42, framed_view=True)

    def described(layers):
        return [(type(layer).__name__, layer.seed) for layer in layers]

    assert described(framing.layers) == described(augmentation(cfg, 42).layers[:5])
    assert described(framing.layers + rest.layers) == described(augmentation(cfg, 42).layers)
    assert {type(layer).__name__ for layer in framing.layers} == {
        "RandomFlip",
        "RandomRotation",
        "RandomTranslation",
        "RandomShear",
        "RandomZoom",
    }
    none, whole = training_augmentation(cfg, 42, framed_view=False)
    assert none is None and described(whole.layers) == described(framing.layers + rest.layers)

    # No geometry on: the teacher sees the image unaugmented (never the augmented one).
    still = replace(cfg, flip=False, rotation=0.0, shift=0.0, shear=0.0, zoom=0.0)
    framing, rest = training_augmentation(still, 42, framed_view=True)
    x = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    assert framing(x, training=True) is x and rest is not None
