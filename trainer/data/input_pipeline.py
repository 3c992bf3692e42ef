"""tf.data input pipelines: decoded arrays in memory, shuffled, augmented on the fly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from trainer.data.splits import Split

# A batch's uint8 images (as the model is fed them, or as framed: train_dataset) and label
# targets in, its train targets out: distillation's online teacher
# (trainer/distillation/distill.py).
BatchTargets = Callable[[np.ndarray, np.ndarray], np.ndarray]


def train_dataset(
    split: Split,
    batch: int,
    seed: int,
    augment=None,
    class_weight: dict[int, float] | None = None,
    targets: BatchTargets | None = None,
    framing=None,
) -> tf.data.Dataset:
    """Shuffled, batched, augmented batches of (uint8 image, target[, sample weight]).

    ``targets``, when given, replaces each batch's targets, after augmentation: it sees
    exactly the pixels the model is fed, or, with ``framing`` (the geometric part of the
    augmentation, run before ``augment``), the image as framed, before ``augment``.
    """
    parts = [split.images, split.targets]
    if class_weight is not None:
        # Per-sample weights rather than Keras' class_weight: they work with soft targets
        # and under a distribution strategy alike.
        parts.append(np.array([class_weight[int(c)] for c in split.labels], np.float32))
    ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
    ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).batch(batch)
    if framing is not None:
        # Rounded to uint8 in between: the teacher takes uint8 pixels, like any version.
        ds = ds.map(lambda x, *rest: (_apply(framing, x), *rest), tf.data.AUTOTUNE)
    viewed = framing is not None and targets is not None
    if augment is not None:
        if viewed:  # (augmented image, framed image, target[, weight])
            ds = ds.map(lambda x, *rest: (_apply(augment, x), x, *rest), tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda x, *rest: (_apply(augment, x), *rest), tf.data.AUTOTUNE)
    elif viewed:
        ds = ds.map(lambda x, *rest: (x, x, *rest))
    if targets is not None:
        # One batch at a time: the teacher's threads.
        ds = ds.map(_replace_targets(targets, viewed))
    return ds.prefetch(tf.data.AUTOTUNE)


def _apply(augment, x: tf.Tensor) -> tf.Tensor:
    # Augmentation works in float; cast back so the model always sees uint8 pixels.
    y = augment(tf.cast(x, tf.float32), training=True)
    return tf.cast(tf.clip_by_value(tf.round(y), 0, 255), tf.uint8)


def _replace_targets(targets: BatchTargets, viewed: bool):
    def replace(x, *rest):
        seen, (y, *rest) = (rest[0], rest[1:]) if viewed else (x, rest)
        new = tf.numpy_function(targets, [seen, y], tf.float32, name="batch_targets")
        new.set_shape(y.shape)
        return (x, new, *rest)

    return replace


def eval_dataset(split: Split, batch: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.targets))
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
