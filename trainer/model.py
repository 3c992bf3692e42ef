"""The network: MobileNetV2 base, a small head, and the two training stages' freezing rules.

Following the keras-io fine-tuning guide: preprocessing lives inside the model so the
exported artifact takes raw uint8 pixels, the base is called in inference mode when its
BatchNorm layers are meant to stay frozen, and augmentation is a separate block that only
runs in the input pipeline (the exported model never sees it).
"""

from __future__ import annotations

import keras
from keras import layers

from trainer.appearance import appearance_steps
from trainer.config import TrainConfig
from trainer.contract import PIXEL_DIVISOR, PIXEL_OFFSET, PREPROCESSING
from trainer.errors import TrainerError


def augmentation(cfg: TrainConfig, seed: int) -> keras.Sequential | None:
    """The random transforms of the recipe, or None when every one is off.

    Geometry first (where the face sits in the crop: the detector's framing), then
    appearance (trainer/appearance.py: resolution, blur, tone, noise), which a camera
    applies to the picture as framed: rotating or zooming after adding noise or blur would
    interpolate the noise and resample the blur into something no camera makes. Erasing
    last (below).
    """
    steps = _framing_steps(cfg, seed) + _appearance_steps(cfg, seed)
    return keras.Sequential(steps, name="augmentation") if steps else None


def training_augmentation(cfg: TrainConfig, seed: int, framed_view: bool) -> tuple:
    """What the input pipeline applies: ``(framing, rest)``.

    With ``framed_view`` (an online teacher shown the framed image) the augmentation in two
    parts, the same layers and seeds: framing (flip and geometry; a no-op when none is on)
    and appearance with erasing, which may be None. Otherwise ``(None, augmentation)``.
    """
    if not framed_view:
        return None, augmentation(cfg, seed)
    framing, appearance = _framing_steps(cfg, seed), _appearance_steps(cfg, seed)
    return (
        keras.Sequential(framing, name="framing") if framing else _unchanged,
        keras.Sequential(appearance, name="appearance") if appearance else None,
    )


def _unchanged(x, training: bool = False):
    return x


def _framing_steps(cfg: TrainConfig, seed: int) -> list[layers.Layer]:
    # Each layer its own seed: Keras layers given the same seed draw the same numbers, so
    # rotation, shift and zoom moved in lockstep (versions up to 6 trained so).
    steps: list[layers.Layer] = []
    if cfg.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation:
        steps.append(
            layers.RandomRotation(cfg.rotation / 360.0, fill_mode="nearest", seed=seed + 11)
        )
    if cfg.shift:
        steps.append(
            layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="nearest", seed=seed + 12)
        )
    if cfg.shear:
        # Keras takes a positive range and picks the direction at random: a float f is
        # shear in [-f, f] (a negative bound is refused when the layer is built).
        steps.append(layers.RandomShear(cfg.shear, cfg.shear, fill_mode="nearest", seed=seed + 13))
    if cfg.zoom:
        steps.append(layers.RandomZoom(cfg.zoom, fill_mode="nearest", seed=seed + 14))
    return steps


def _appearance_steps(cfg: TrainConfig, seed: int) -> list[layers.Layer]:
    steps = appearance_steps(cfg, seed)
    if cfg.erasing:
        # Last, so the patch is not moved off the face, and its noise fill is neither
        # blurred nor toned down by the appearance steps. A (p, p) factor is the probability
        # itself; a single float would draw a probability from [0, p]. 3-30 % of the area,
        # filled with noise as in the paper, so occlusions (hands, hair, glasses) are
        # rehearsed rather than the model leaning on one region of the face.
        prob = (cfg.erasing, cfg.erasing)
        steps.append(layers.RandomErasing(prob, value_range=(0, 255), seed=seed + 15))
    return steps


def _base(cfg: TrainConfig) -> keras.Model:
    weights = None if cfg.base_weights == "none" else cfg.base_weights
    try:
        return keras.applications.MobileNetV2(
            input_shape=(cfg.input_size, cfg.input_size, 3),
            alpha=cfg.alpha,
            include_top=False,
            weights=weights,
        )
    except (ValueError, OSError) as e:
        msg = f"cannot build MobileNetV2 with weights {cfg.base_weights!r}: {e}"
        raise TrainerError(msg) from e


def build_model(cfg: TrainConfig, num_classes: int) -> tuple[keras.Model, keras.Model]:
    """The classifier (uint8 images in, class probabilities out) and its base network."""
    size = cfg.input_size
    inputs = keras.Input((size, size, 3), dtype=PREPROCESSING.dtype, name="image")
    # The contract's "scaling": MobileNetV2's [-1, 1], inside the model.
    scale = layers.Rescaling(1.0 / PIXEL_DIVISOR, offset=PIXEL_OFFSET, name="mobilenet_v2_scale")
    x = scale(inputs)
    base = _base(cfg)
    # training=False pins BatchNorm to its ImageNet statistics even when the layers are
    # later unfrozen; without it, BatchNorm follows the trainable flag (keras-io guide).
    x = base(x, training=False) if cfg.bn_mode == "frozen" else base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{cfg.name}_mobilenet_v2"), base


def set_stage(base: keras.Model, stage: int, cfg: TrainConfig) -> int:
    """Freeze the base (stage 1) or unfreeze its top layers (stage 2); count trainable layers."""
    if stage == 1:
        base.trainable = False
        return 0
    base.trainable = True
    cut = 0 if cfg.unfreeze == 0 else max(0, len(base.layers) - cfg.unfreeze)
    for i, layer in enumerate(base.layers):
        trainable = i >= cut
        if isinstance(layer, layers.BatchNormalization) and cfg.bn_mode == "frozen":
            trainable = False
        layer.trainable = trainable
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)
