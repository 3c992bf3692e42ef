"""The two-stage fine-tune: frozen base, then unfrozen top layers, resumable per epoch."""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.data import load_dataset
from trainer.errors import TrainerError
from trainer.export import code_revision
from trainer.model import augmentation, build_model, set_stage
from trainer.pipeline import eval_dataset, train_dataset
from trainer.splits import Prepared, class_weights, prepare

log = logging.getLogger("trainer")
HISTORY_FIELDS = [
    "stage",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
    "images_per_second",
]


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
        logs, st = logs or {}, self.state
        secs = time.monotonic() - self.t0
        lr = self.model.optimizer.learning_rate
        row = {
            "stage": self.stage,
            "epoch": epoch + 1,
            "seconds": round(secs, 1),
            "learning_rate": float(np.asarray(lr)),
            "images_per_second": round(self.images / secs, 1),
            **{k: round(float(logs[k]), 5) for k in HISTORY_FIELDS if k in logs},
        }
        st["history"].append(row)
        _append_csv(self.run_dir / "history.csv", row)
        val_loss = float(logs.get("val_loss", np.inf))
        if val_loss < st["best_val_loss"]:
            st.update(best_val_loss=val_loss, best_epoch=[self.stage, epoch + 1], wait=0)
            checkpoint.save_best(self.run_dir, self.model)
        else:
            st["wait"] += 1
        st.update(stage=self.stage, epoch=epoch + 1)
        if self.patience and st["wait"] >= self.patience and self.stage == 2:
            self.model.stop_training = True
            st["stopped_early"] = True
        checkpoint.save(self.run_dir, self.model, st)
        self.remaining -= 1
        print(
            f"stage {self.stage} epoch {epoch + 1}/{self.epochs}  "
            f"loss {row.get('loss', 0):.4f} acc {row.get('accuracy', 0):.4f}  "
            f"val_loss {val_loss:.4f} val_acc {row.get('val_accuracy', 0):.4f}  "
            f"lr {row['learning_rate']:.2e}  {secs:.0f}s ({row['images_per_second']} img/s)"
            f"  ETA {self.remaining * secs / 60:.0f} min",
            flush=True,
        )


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


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


def new_state() -> dict:
    return {
        "stage": 1,
        "epoch": 0,
        "best_val_loss": float("inf"),
        "best_epoch": None,
        "wait": 0,
        "history": [],
        "stopped_early": False,
    }


def fit(cfg: TrainConfig, run_dir: Path, prep: Prepared) -> keras.Model:
    """Run (or resume) both stages in ``run_dir``; return the model with its best weights."""
    keras.utils.set_random_seed(cfg.seed)
    state = checkpoint.load_state(run_dir) or new_state()
    if state["epoch"] or state["stage"] > 1:
        print(
            f"resuming {run_dir}: stage {state['stage']}, {state['epoch']} epoch(s) done",
            flush=True,
        )
    train, val = prep.splits["train"], prep.splits["val"]
    weights = class_weights(train.labels, len(prep.classes), cfg.class_weight)
    aug = augmentation(cfg, cfg.seed)
    ds_val = eval_dataset(val, cfg.batch_size)
    steps = int(np.ceil(len(train) / cfg.batch_size))
    strategy = strategy_for(cfg)
    devices = strategy.extended.worker_devices if cfg.distribute != "none" else ["default device"]
    print(
        f"training on {strategy.num_replicas_in_sync} replica(s): {', '.join(devices)}", flush=True
    )
    with strategy.scope():
        model, base = build_model(cfg, len(prep.classes))
    if cfg.init_from:
        # A resumed run's checkpoint, loaded below, overrides these starting weights.
        n = checkpoint.init_from_export(model, Path(cfg.init_from), prep.classes)
        print(f"started from {cfg.init_from}: {n} weights", flush=True)
    resumed = bool(state["history"])
    for stage, epochs in ((1, cfg.stage1_epochs), (2, cfg.stage2_epochs)):
        done = (
            state["epoch"] if state["stage"] == stage else (epochs if state["stage"] > stage else 0)
        )
        if epochs == 0 or done >= epochs or state["stopped_early"]:
            continue
        with strategy.scope():
            n = set_stage(base, stage, cfg)
            compile_for_stage(model, cfg, stage, steps)
        if resumed and state["history"]:
            # Same stage: weights and optimizer; previous stage: its weights only.
            checkpoint.restore(run_dir, model, with_optimizer=state["stage"] == stage)
        resumed = False
        if state["stage"] != stage:
            # Each stage keeps its own best: stage 2's first epochs are often worse than
            # stage 1's end (BatchNorm statistics re-settling) and must not end it early.
            state.update(stage=stage, epoch=0, wait=0, best_val_loss=float("inf"))
        print(
            f"stage {stage}: {epochs} epoch(s), {n} trainable base layer(s), "
            f"{len(train)} train / {len(val)} val images",
            flush=True,
        )
        remaining = epochs - done + (cfg.stage2_epochs if stage == 1 else 0)
        loop = EpochLoop(run_dir, state, stage, epochs, remaining, cfg.early_stopping, len(train))
        callbacks = [loop]
        if cfg.lr_schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2))
        ds = train_dataset(train, cfg.batch_size, cfg.seed + stage, aug, weights)
        model.fit(
            ds,
            validation_data=ds_val,
            epochs=epochs,
            initial_epoch=done,
            callbacks=callbacks,
            verbose=0,
        )
    checkpoint.load_best(run_dir, model)
    (run_dir / "state.json").write_text(json.dumps(state, indent=2))
    return model


def prepare_run(cfg: TrainConfig) -> Prepared:
    ds = load_dataset(
        Path(cfg.data),
        Path(cfg.labels) if cfg.labels else None,
        cfg.label_column,
        cfg.soft_labels,
        cfg.min_votes,
    )
    prep = prepare(ds, cfg)
    prep.fingerprint = ds.fingerprint()
    prep.skipped = dict(ds.skipped)
    return prep


def open_run(run_dir: Path, cfg: TrainConfig | None) -> TrainConfig:
    """Start a new run folder with ``cfg`` or, when ``cfg`` is None, resume the one there."""
    cfg_file = run_dir / "config.json"
    if cfg is None:
        if not cfg_file.is_file():
            raise TrainerError(f"--resume {run_dir}: no config.json there; not a run folder")
        _note_revision(run_dir)
        return TrainConfig.from_json(cfg_file.read_text())
    if cfg_file.exists():
        raise TrainerError(
            f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(cfg.to_json())
    _note_revision(run_dir)
    return cfg


REVISIONS = "code_revisions.txt"


def _note_revision(run_dir: Path) -> None:
    # The code that trains can differ from the code that exports (a run resumed after new
    # commits, or edits made while it ran): record the revision of every start and resume.
    with (run_dir / REVISIONS).open("a") as f:
        f.write(code_revision() + "\n")


def run_revisions(run_dir: Path) -> list[str]:
    """The code revisions a run was started and resumed with, in order (a revision that
    ran several sessions in a row once)."""
    f = run_dir / REVISIONS
    lines = f.read_text().split() if f.is_file() else []
    return [r for i, r in enumerate(lines) if i == 0 or r != lines[i - 1]]
