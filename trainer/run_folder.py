"""A training run's folder: its files, and where a resumed run picks up.

``config.json`` (the options, written once), ``code_revisions.txt`` (one line per start
or resume), ``history.csv`` (one row per epoch) and ``state.json`` (the run state once
training is over) live here; the per-epoch checkpoint and the best weights are
trainer/checkpoint.py's. The run state is a JSON object: the current stage and epoch in
it, the best validation loss and epoch, early stopping's wait, every epoch's figures and
whether training stopped early. The functions below turn it into what the training loop
needs to resume: which stages are left, and how many epochs of each.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from trainer.config import TrainConfig
from trainer.errors import TrainerError
from trainer.revision import code_revision

CONFIG, STATE, HISTORY = "config.json", "state.json", "history.csv"
REVISIONS, CURVES = "code_revisions.txt", "training_curves.png"
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


def open_run(run_dir: Path, cfg: TrainConfig | None) -> TrainConfig:
    """Start a new run folder with ``cfg`` or, when ``cfg`` is None, resume the one there."""
    if cfg is None:
        saved = saved_config(run_dir)
        if saved is None:
            raise TrainerError(f"--resume {run_dir}: no config.json there; not a run folder")
        _note_revision(run_dir)
        return saved
    if (run_dir / CONFIG).exists():
        raise TrainerError(
            f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(cfg.to_json())
    _note_revision(run_dir)
    return cfg


def saved_config(run_dir: Path) -> TrainConfig | None:
    """The options the run in ``run_dir`` was started with (None: not a run folder)."""
    path = run_dir / CONFIG
    return TrainConfig.from_json(path.read_text()) if path.is_file() else None


def change_keep(run_dir: Path, keep: str) -> None:
    """Record a resumed run's new ``--keep`` in its config.json (a later resume keeps it)."""
    from dataclasses import replace

    cfg = saved_config(run_dir)
    if cfg is not None and cfg.keep != keep:
        (run_dir / CONFIG).write_text(replace(cfg, keep=keep).to_json())
        print(f"{run_dir}: exports the {keep} epoch's weights from now on (was {cfg.keep})")


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


def append_history(run_dir: Path, row: dict) -> None:
    """Add one epoch's figures to ``history.csv`` (its header first, in a new run)."""
    path = run_dir / HISTORY
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def new_state() -> dict:
    """The run state of a run at its start (no checkpoint yet)."""
    return {
        "stage": 1,
        "epoch": 0,
        "best_val_loss": float("inf"),
        "best_epoch": None,
        "wait": 0,
        "history": [],
        "stopped_early": False,
    }


def write_final_state(run_dir: Path, state: dict) -> None:
    (run_dir / STATE).write_text(json.dumps(state, indent=2))


def resume_note(run_dir: Path, state: dict) -> str | None:
    """The line that says where a resumed run picks up (None for a run at its start)."""
    if state["epoch"] or state["stage"] > 1:
        return f"resuming {run_dir}: stage {state['stage']}, {state['epoch']} epoch(s) done"
    return None


# Seeds stay below 2**31 with room for the offsets added to them (each augmentation layer
# and each stage its own): NumPy takes seeds below 2**32, some TensorFlow ops below 2**31.
_SEED_RANGE = 2**31 - 1024


def session_seed(seed: int, state: dict) -> int:
    """The seed of this session's random draws (shuffle order, augmentation, dropout).

    A run at its start uses its own seed, so a run started today draws what it always
    did. A resumed session gets a seed of its own, from the epochs already trained:
    seeded as the first session was, it drew that session's first epochs again, batch
    for batch (versions 13 and 14 trained two replayed epochs after each resume).
    """
    done = len(state["history"])
    return seed if not done else (seed + 1_000_003 * done) % _SEED_RANGE


def stages(cfg: TrainConfig) -> list[tuple[int, int]]:
    """Each training stage and its number of epochs, in order."""
    return [(1, cfg.stage1_epochs), (2, cfg.stage2_epochs)]


def epochs_done(state: dict, stage: int, epochs: int) -> int:
    """Epochs of ``stage`` already trained: all of them once the run is past it."""
    if state["stage"] == stage:
        return state["epoch"]
    return epochs if state["stage"] > stage else 0


def stage_is_over(state: dict, stage: int, epochs: int) -> bool:
    """Nothing left to train in ``stage``: none asked, all done, or stopped early."""
    return epochs == 0 or epochs_done(state, stage, epochs) >= epochs or state["stopped_early"]


def epochs_left(cfg: TrainConfig, stage: int, done: int) -> int:
    """Epochs still to train from ``stage`` (``done`` of it trained) to the end of the run."""
    epochs = dict(stages(cfg))
    return epochs[stage] - done + (epochs[2] if stage == 1 else 0)


def resumes_optimizer(state: dict, stage: int) -> bool:
    """Whether the checkpoint's optimizer state carries on into ``stage``: only within the
    stage it was saved in (a new stage compiles a new optimizer, so takes weights only)."""
    return state["stage"] == stage


def enter_stage(state: dict, stage: int) -> None:
    """Make ``stage`` the state's current stage, unless it is already."""
    if state["stage"] != stage:
        # Each stage keeps its own best: stage 2's first epochs are often worse than
        # stage 1's end (BatchNorm statistics re-settling) and must not end it early.
        state.update(stage=stage, epoch=0, wait=0, best_val_loss=float("inf"))


def record_epoch(state: dict, row: dict, val_loss: float, patience: int) -> bool:
    """Add a finished epoch (its ``history.csv`` row) to the state, counting early stopping's
    wait; return whether its validation loss is the best of its stage so far."""
    stage, epoch = row["stage"], row["epoch"]
    state["history"].append(row)
    improved = val_loss < state["best_val_loss"]
    if improved:
        state.update(best_val_loss=val_loss, best_epoch=[stage, epoch], wait=0)
    else:
        state["wait"] += 1
    state.update(stage=stage, epoch=epoch)
    # Only stage 2 stops early: stage 1 is a short warm-up of the head.
    if patience and state["wait"] >= patience and stage == 2:
        state["stopped_early"] = True
    return improved
