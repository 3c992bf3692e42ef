"""Average exported versions into one new version with the same contract.

Networks trained from different starting points make partly different mistakes, so the
mean of their probabilities is usually more accurate than any one of them. The result is one
SavedModel whose signature calls every member and returns the mean: the service loads it
like any other version (at the cost of one member's compute per member).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from trainer.contract import ModelContract
from trainer.errors import TrainerError
from trainer.export import Composite


class Ensemble(Composite):
    """Exported members behind one signature that returns the mean of their outputs."""

    def __init__(self, folders: list[Path], contracts: list[ModelContract]):
        super().__init__("ensemble", folders, contracts)

    def combine(self, outputs: list[tf.Tensor]) -> tf.Tensor:
        return tf.add_n(outputs) / float(len(outputs))

    def reference(self, outputs: list[np.ndarray]) -> np.ndarray:
        return np.mean(outputs, axis=0)


def read_members(folders: list[Path]) -> list[ModelContract]:
    """The members' contracts, refused unless they share one contract and one dataset."""
    if len(folders) < 2:
        raise TrainerError("an ensemble needs at least 2 exported versions")
    if len(set(map(Path.resolve, folders))) < len(folders):
        raise TrainerError("the same version is given twice")
    members = []
    for f in folders:
        member = ModelContract.read(f)
        if "training" not in member.details:
            # The ensemble is measured on splits rebuilt from a member's training options.
            raise TrainerError(f"{f} is not a trained version (an ensemble?): give its members")
        members.append(member)
    first = dict(_must_agree(members[0]))
    for f, member in zip(folders[1:], members[1:], strict=True):
        for key, value in _must_agree(member):
            if value != first[key]:
                raise TrainerError(f"{f} differs from {folders[0]} in {key!r}: cannot average")
    prints = {m.details.get("dataset", {}).get("fingerprint") for m in members}
    if len(prints) != 1 or None in prints:
        # Different training data would put one member's training images in another's
        # validation split, and the ensemble's validation figures would mean nothing.
        raise TrainerError(
            f"the members were not trained on the same data (dataset fingerprints {prints})"
        )
    return members


def _must_agree(member: ModelContract) -> tuple[tuple[str, object], ...]:
    """The contract fields, named, that must be equal for the members' outputs to mean the
    same thing."""
    return (
        ("labels", member.labels),
        ("input", member.input),
        ("preprocessing", member.preprocessing),
        ("face_crop", member.face_crop),
    )


def member_summary(folder: Path, member: ModelContract) -> dict:
    """What the ensemble's metadata and card say about one member."""
    details = member.details
    init = details.get("init", {})
    return {
        "folder": str(folder),
        "name": member.name,
        "version": member.version,
        "code_revision": details.get("code_revision"),
        "val_accuracy": member.metrics.get("val", {}).get("accuracy"),
        "training": details.get("training", {}),
        "init_from": init.get("folder"),
        "train_seconds": details.get("train_seconds", 0) + init.get("total_train_seconds", 0),
    }
