"""tf.data input pipelines: decoded arrays in memory, shuffled, augmented on the fly."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer.splits import Split


def train_dataset(
    split: Split, batch: int, seed: int, augment=None, class_weight: dict[int, float] | None = None
) -> tf.data.Dataset:
    """Shuffled, batched, augmented batches of (uint8 image, target[, sample weight])."""
    parts = [split.images, split.targets]
    if class_weight is not None:
        # Per-sample weights rather than Keras' class_weight: they work with soft targets
        # and under a distribution strategy alike.
        parts.append(np.array([class_weight[int(c)] for c in split.labels], np.float32))
    ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
    ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).batch(batch)
    if augment is not None:
        # Augmentation works in float; cast back so the model always sees uint8 pixels.
        def aug(x, *rest):
            y = augment(tf.cast(x, tf.float32), training=True)
            return (tf.cast(tf.clip_by_value(tf.round(y), 0, 255), tf.uint8), *rest)

        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, batch: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.targets))
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
