"""Appearance augmentation: what light, camera and face size do to a face, not where it is.

Brightness and contrast are Keras' own layers. Gamma, low resolution, blur and noise are
small layers written here, because Keras 3 has no gamma or resolution layer, and its
``RandomGaussianBlur`` and ``GaussianNoise`` do not do what a camera does (see
``RandomBlur`` and ``RandomNoise``). Every layer works on float32 batches in 0..255 at
the model's input size (trainer/data/input_pipeline.py), is the identity unless called with
``training=True``, and changes the three channels alike: the model's contract is a gray
face repeated into three channels, so a colour change is something it never sees.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from trainer.config import TrainConfig

NATIVE_SIDE = 48  # FER2013's faces: blur strengths are defined at this scale
BLUR_MAX_SIGMA = 1.5  # px at NATIVE_SIDE; scaled with the input size
LOW_RES_MIN_SIDE = 24  # px: the smallest face the low-resolution step imitates

# Each layer gets its own seed: Keras layers given one seed draw the same numbers. These
# offsets keep them independent of each other and of the geometric layers (11-15).
_SEED_OFFSETS = {"low_res": 1, "blur": 2, "contrast": 3, "brightness": 4, "gamma": 5, "noise": 6}


def _per_image(x: tf.Tensor, low: float, high: float, gen: keras.random.SeedGenerator):
    """One uniform draw per image, shaped to broadcast over height, width and channels."""
    return keras.random.uniform((tf.shape(x)[0], 1, 1, 1), low, high, seed=gen)


def _chosen(x: tf.Tensor, probability: float, gen: keras.random.SeedGenerator) -> tf.Tensor:
    """Per image, True with ``probability``."""
    return _per_image(x, 0.0, 1.0, gen) < probability


class RandomGamma(layers.Layer):
    """``255 * (x / 255) ** g`` with ``g`` log-uniform in ``[1 / (1 + factor), 1 + factor]``.

    Log-uniform so that darkening and lightening the mid-tones are equally likely.
    """

    def __init__(self, factor: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.seed = factor, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        limit = math.log1p(self.factor)
        g = tf.exp(_per_image(x, -limit, limit, self.generator))
        return 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 0.0, 1.0), g)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


class RandomLowResolution(layers.Layer):
    """With ``probability``, shrink an image to a random side in ``[min_side, its side]``
    and enlarge it back, as the service does with a small face.

    Shrinking averages pixels (area), like a camera sampling a small face; enlarging is
    bilinear with half-pixel centres, the sampling of OpenCV's INTER_LINEAR, the service's
    enlargement (metadata "resize_enlarge").
    """

    def __init__(self, probability: float, min_side: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability, self.min_side, self.seed = probability, min_side, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        size = int(x.shape[1])  # square, and static in the input pipeline
        # floor(uniform(min_side, size + 1)): every whole side from min_side to size alike.
        side = tf.cast(_per_image(x, self.min_side, size + 1, self.generator), "int32")

        def one(args):
            image, s = args
            small = tf.image.resize(image, tf.stack([s, s]), method="area")
            return tf.image.resize(small, [size, size], method="bilinear")

        low = tf.map_fn(one, (x, tf.reshape(side, [-1])), fn_output_signature=x.dtype)
        return tf.where(_chosen(x, self.probability, self.generator), low, x)

    def get_config(self):
        return {
            **super().get_config(),
            "probability": self.probability,
            "min_side": self.min_side,
            "seed": self.seed,
        }


class RandomBlur(layers.Layer):
    """With ``probability``, an isotropic Gaussian blur of sigma uniform in ``[0, max_sigma]``.

    Not Keras' RandomGaussianBlur: it pads with zeros, which darkens a border about two
    sigmas wide (a mid-gray image's corner comes out at half its value with sigma up to
    3), and it draws one sigma per batch, separately for x and y. Here each image gets its
    own round sigma and the borders are mirrored, as a blurred photo's would continue.
    """

    def __init__(self, probability: float, max_sigma: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability, self.max_sigma, self.seed = probability, max_sigma, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        sigma = _per_image(x, 0.0, self.max_sigma, self.generator)
        # An unchosen image gets a vanishing sigma: its kernel is exactly [0, .., 1, .., 0].
        sigma = tf.where(_chosen(x, self.probability, self.generator), sigma, 0.0) + 1e-3
        radius = max(1, math.ceil(3 * self.max_sigma))
        t = tf.range(-radius, radius + 1, dtype=x.dtype)
        taps = tf.exp(-0.5 * (t / tf.reshape(sigma, [-1, 1])) ** 2)  # [batch, taps]
        return _separable(x, taps / tf.reduce_sum(taps, axis=1, keepdims=True), radius)

    def get_config(self):
        return {
            **super().get_config(),
            "probability": self.probability,
            "max_sigma": self.max_sigma,
            "seed": self.seed,
        }


def _separable(x: tf.Tensor, taps: tf.Tensor, radius: int) -> tf.Tensor:
    """Filter each image with its own separable kernel (``taps``: [batch, 2 * radius + 1]).

    The batch is laid out as the channels of one wide image, so that one depthwise
    convolution per axis gives every image its own kernel (5x faster here than summing
    shifted copies); borders are mirrored.
    """
    b, h, w, c = tf.unstack(tf.shape(x))
    wide = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
    wide = tf.pad(wide, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    k = tf.transpose(tf.repeat(taps, c, axis=0))  # [taps, batch * channels]
    wide = tf.nn.depthwise_conv2d(wide, k[:, None, :, None], [1, 1, 1, 1], "VALID")
    wide = tf.nn.depthwise_conv2d(wide, k[None, :, :, None], [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(wide, [h, w, b, c]), [2, 0, 1, 3])


class RandomNoise(layers.Layer):
    """Additive Gaussian noise, the same in the three channels, of a std drawn per image
    uniformly from ``[0, max_std]`` (pixel units).

    Not Keras' GaussianNoise: its std is fixed and its noise differs per channel, which
    would colour a gray face (a colour photo's sensor noise is gray once converted to luma,
    as the service does).
    """

    def __init__(self, max_std: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_std, self.seed = max_std, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        std = _per_image(x, 0.0, self.max_std, self.generator)
        shape = tf.concat([tf.shape(x)[:3], [1]], axis=0)
        return x + std * keras.random.normal(shape, seed=self.generator)

    def get_config(self):
        return {**super().get_config(), "max_std": self.max_std, "seed": self.seed}


def appearance_steps(cfg: TrainConfig, seed: int) -> list[layers.Layer]:
    """The appearance layers ``cfg`` turns on, in the order they are applied.

    Resolution and blur first: they are what the optics and the face's size did to the
    picture, and doing them after the noise would smooth the noise away. Then exposure and
    tone (contrast, brightness, gamma). Noise last, so that no other step smooths, scales
    or clips it: sensor noise stays visible on a dark, low-contrast face.

    Args:
        cfg: the training options (all of these are 0, i.e. off, by default).
        seed: the run's augmentation seed; each layer derives its own from it.
    """
    s = {k: seed + v for k, v in _SEED_OFFSETS.items()}
    scale = cfg.input_size / NATIVE_SIDE
    steps: list[layers.Layer] = []
    if cfg.low_res:
        min_side = min(LOW_RES_MIN_SIDE, cfg.input_size)
        steps.append(RandomLowResolution(cfg.low_res, min_side, s["low_res"], name="low_res"))
    if cfg.blur:
        steps.append(RandomBlur(cfg.blur, BLUR_MAX_SIGMA * scale, s["blur"], name="blur"))
    if cfg.contrast:
        # A (f, f) pair: Keras 3.15 turns a single float f into factors in [1, 1 + f]
        # (contrast only ever raised), not the [1 - f, 1 + f] its documentation gives.
        factor = (cfg.contrast, cfg.contrast)
        steps.append(layers.RandomContrast(factor, seed=s["contrast"], name="contrast"))
    if cfg.brightness:
        # A single f is a shift in [-f, f] times the value range, clipped to 0..255.
        steps.append(
            layers.RandomBrightness(
                cfg.brightness, value_range=(0, 255), seed=s["brightness"], name="brightness"
            )
        )
    if cfg.gamma:
        steps.append(RandomGamma(cfg.gamma, s["gamma"], name="gamma"))
    if cfg.noise:
        steps.append(RandomNoise(cfg.noise, s["noise"], name="noise"))
    return steps
