"""The two-stage fine-tune: frozen base, then unfrozen top layers, resumable per epoch.

The Keras side of training: the distribution strategy, each stage's compile, ``fit`` and
the callback that ends every epoch. Where a run stands, and what a resumed run has left
to do, is trainer/run_folder.py's.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from trainer import checkpoint, run_folder
from trainer.config import TrainConfig
from trainer.data.input_pipeline import BatchTargets, eval_dataset, train_dataset
from trainer.data.splits import Prepared, class_weights
from trainer.model import build_model, set_stage, training_augmentation


class EpochLoop(keras.callbacks.Callback):
    """After every epoch: log a progress line and a CSV row, keep the best weights, apply
    early stopping and write a checkpoint. Its state lives in the checkpoint so a resumed
    run carries on where the killed one stopped."""

    def __init__(
        self,
        run_dir: Path,
        state: dict,
        stage: int,
        epochs: int,
        remaining: int,
        patience: int,
        images: int,
    ):
        super().__init__()
        self.run_dir, self.state, self.stage, self.epochs = run_dir, state, stage, epochs
        self.remaining, self.patience, self.images = remaining, patience, images
        self.t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        secs = time.monotonic() - self.t0
        lr = self.model.optimizer.learning_rate
        row = {
            "stage": self.stage,
            "epoch": epoch + 1,
            "seconds": round(secs, 1),
            "learning_rate": float(np.asarray(lr)),
            "images_per_second": round(self.images / secs, 1),
            **{k: round(float(logs[k]), 5) for k in run_folder.HISTORY_FIELDS if k in logs},
        }
        run_folder.append_history(self.run_dir, row)
        val_loss = float(logs.get("val_loss", np.inf))
        if run_folder.record_epoch(self.state, row, val_loss, self.patience):
            checkpoint.save_best(self.run_dir, self.model)
        if self.state["stopped_early"]:
            self.model.stop_training = True
        checkpoint.save(self.run_dir, self.model, self.state)
        self.remaining -= 1
        print(
            f"stage {self.stage} epoch {epoch + 1}/{self.epochs}  "
            f"loss {row.get('loss', 0):.4f} acc {row.get('accuracy', 0):.4f}  "
            f"val_loss {val_loss:.4f} val_acc {row.get('val_accuracy', 0):.4f}  "
            f"lr {row['learning_rate']:.2e}  {secs:.0f}s ({row['images_per_second']} img/s)"
            f"  ETA {self.remaining * secs / 60:.0f} min",
            flush=True,
        )


def strategy_for(cfg: TrainConfig) -> tf.distribute.Strategy:
    """MirroredStrategy over every GPU (or every logical CPU when there is none)."""
    if cfg.distribute == "none":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def _optimizer(cfg: TrainConfig, stage: int, steps: int) -> keras.optimizers.Optimizer:
    lr = cfg.stage1_lr if stage == 1 else cfg.stage2_lr
    epochs = cfg.stage1_epochs if stage == 1 else cfg.stage2_epochs
    # Stage 1 only warms up the head: a constant rate; the schedule shapes stage 2.
    if cfg.lr_schedule == "cosine" and stage == 2:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps))
    return keras.optimizers.Adam(lr)


def compile_for_stage(model: keras.Model, cfg: TrainConfig, stage: int, steps: int) -> None:
    """Compile ``model`` as training stage ``stage`` does (optimizer, loss, metrics).

    Args:
        model: the classifier from ``build_model``.
        cfg: the training options.
        stage: 1 (base frozen) or 2 (fine-tuning).
        steps: batches per epoch (the cosine schedule's length).
    """
    model.compile(
        optimizer=_optimizer(cfg, stage, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def fit(
    cfg: TrainConfig, run_dir: Path, prep: Prepared, batch_targets: BatchTargets | None = None
) -> tuple[keras.Model, dict]:
    """Run (or resume) both stages in ``run_dir``.

    ``batch_targets``, when given, makes each augmented training batch's targets (an
    online teacher); otherwise the train split's own targets are used.

    Returns:
        The model with its best weights, and the run state (also written to state.json).
    """
    state = checkpoint.load_state(run_dir) or run_folder.new_state()
    seed = run_folder.session_seed(cfg.seed, state)
    keras.utils.set_random_seed(seed)
    if note := run_folder.resume_note(run_dir, state):
        print(f"{note}; this session's seed {seed}", flush=True)
    train, val = prep.splits["train"], prep.splits["val"]
    weights = class_weights(train.labels, len(prep.classes), cfg.class_weight)
    framed = batch_targets is not None and cfg.teacher_view == "framed"
    framing, aug = training_augmentation(cfg, seed, framed)
    ds_val = eval_dataset(val, cfg.batch_size)
    steps = int(np.ceil(len(train) / cfg.batch_size))
    strategy = _strategy_announced(cfg)
    model, base = _build(cfg, strategy, prep.classes)
    restore = bool(state["history"])  # once, into the first stage this session trains
    for stage, epochs in run_folder.stages(cfg):
        if run_folder.stage_is_over(state, stage, epochs):
            continue
        done = run_folder.epochs_done(state, stage, epochs)
        with strategy.scope():
            n = set_stage(base, stage, cfg)
            compile_for_stage(model, cfg, stage, steps)
        if restore:
            # Same stage: weights and optimizer; previous stage: its weights only.
            optimizer_too = run_folder.resumes_optimizer(state, stage)
            checkpoint.restore(run_dir, model, with_optimizer=optimizer_too)
            restore = False
        run_folder.enter_stage(state, stage)
        print(
            f"stage {stage}: {epochs} epoch(s), {n} trainable base layer(s), "
            f"{len(train)} train / {len(val)} val images",
            flush=True,
        )
        callbacks = _callbacks(cfg, run_dir, state, stage, done, len(train))
        ds = train_dataset(
            train, cfg.batch_size, seed + stage, aug, weights, batch_targets, framing
        )
        model.fit(
            ds,
            validation_data=ds_val,
            epochs=epochs,
            initial_epoch=done,
            callbacks=callbacks,
            verbose=0,
        )
    if cfg.keep == "last":
        if restore:  # every stage was over already: the last epoch is in the checkpoint
            checkpoint.restore(run_dir, model, with_optimizer=False)
        state["exported_epoch"] = state["history"][-1]["stage"], state["history"][-1]["epoch"]
    else:
        checkpoint.load_best(run_dir, model)
        state["exported_epoch"] = state["best_epoch"]
    run_folder.write_final_state(run_dir, state)
    return model, state


def _strategy_announced(cfg: TrainConfig) -> tf.distribute.Strategy:
    """``strategy_for(cfg)``, once it has said which devices it trains on."""
    strategy = strategy_for(cfg)
    devices = strategy.extended.worker_devices if cfg.distribute != "none" else ["default device"]
    print(
        f"training on {strategy.num_replicas_in_sync} replica(s): {', '.join(devices)}", flush=True
    )
    return strategy


def _build(
    cfg: TrainConfig, strategy: tf.distribute.Strategy, classes: list[str]
) -> tuple[keras.Model, keras.Model]:
    """The classifier and its base, under ``strategy``, from ``--init-from`` if given."""
    with strategy.scope():
        model, base = build_model(cfg, len(classes))
    if cfg.init_from:
        # A resumed run's checkpoint, loaded later, overrides these starting weights.
        n = checkpoint.init_from_export(model, Path(cfg.init_from), classes)
        print(f"started from {cfg.init_from}: {n} weights", flush=True)
    return model, base


def _callbacks(
    cfg: TrainConfig, run_dir: Path, state: dict, stage: int, done: int, images: int
) -> list[keras.callbacks.Callback]:
    """The callbacks of ``stage``'s ``model.fit``, ``done`` of its epochs already trained."""
    epochs = dict(run_folder.stages(cfg))[stage]
    remaining = run_folder.epochs_left(cfg, stage, done)
    loop = EpochLoop(run_dir, state, stage, epochs, remaining, cfg.early_stopping, images)
    callbacks: list[keras.callbacks.Callback] = [loop]
    if cfg.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2))
    return callbacks
