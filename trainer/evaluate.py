"""Evaluate an exported model exactly as the service runs it: the SavedModel signature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from trainer.contract import METADATA, ModelContract, read_labels
from trainer.errors import TrainerError


@dataclass
class Exported:
    """A loaded SavedModel and its contract files."""

    fn: Callable[[tf.Tensor], dict[str, tf.Tensor]]  # the serving signature
    contract: ModelContract
    labels: list[str]  # labels.json's: the class order the service reports

    def predict(self, images: np.ndarray, batch: int = 256, flip_tta: bool = False) -> np.ndarray:
        """Class probabilities for uint8 images; with ``flip_tta`` averaged with the mirror."""
        out = []
        for i in range(0, len(images), batch):
            x = images[i : i + batch]
            p = self._call(x)
            if flip_tta:
                p = (p + self._call(x[:, :, ::-1, :])) / 2.0
            out.append(p)
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def _call(self, x: np.ndarray) -> np.ndarray:
        res = self.fn(tf.constant(np.ascontiguousarray(x), self.contract.input.dtype))
        return next(iter(res.values())).numpy()


def load_exported(model_dir: Path) -> Exported:
    """The exported version in ``model_dir``, its contract checked.

    Raises:
        TrainerError: ``model_dir`` has no metadata.json (ContractError: a malformed one).
    """
    if not (model_dir / METADATA).is_file():
        raise TrainerError(f"{model_dir} is not an exported model (no {METADATA})")
    contract = ModelContract.read(model_dir)
    labels = read_labels(model_dir)
    loaded = tf.saved_model.load(str(model_dir))
    fn = _keep_alive(loaded.signatures[contract.signature], loaded)
    return Exported(fn, contract, labels)


def _keep_alive(sig, loaded):
    # A signature only holds a weak reference to its variables: keep the module alive.
    def call(x):
        return sig(x)

    call.module = loaded  # type: ignore[attr-defined]
    return call


def metrics(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1 and the confusion matrix."""
    y_pred = probs.argmax(axis=1)
    idx = list(range(len(labels)))
    rep = classification_report(
        y_true, y_pred, labels=idx, target_names=labels, output_dict=True, zero_division=0
    )
    return {
        "images": int(len(y_true)),
        "accuracy": round(float((y_pred == y_true).mean()), 4) if len(y_true) else 0.0,
        "macro_f1": round(
            float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)), 4
        ),
        "per_class": {
            k: {
                m: round(float(rep[k][m]), 4) if m != "support" else int(rep[k][m])
                for m in ("precision", "recall", "f1-score", "support")
            }
            for k in labels
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
    }


def markdown_table(result: dict, labels: list[str]) -> str:
    """Per-class precision / recall / F1 as a Markdown table."""
    lines = ["| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    for k in labels:
        c = result["per_class"][k]
        lines.append(
            f"| {k} | {c['precision']:.3f} | {c['recall']:.3f} | "
            f"{c['f1-score']:.3f} | {c['support']} |"
        )
    return "\n".join(lines)
