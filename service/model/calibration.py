"""Calibrated confidences: the version's temperature applied, and the uncertain rule.

The trainer fits one temperature T per version on held-out faces (trainer/calibration.py)
and writes it, with the confidence below which a face is "uncertain", into the contract
(service.model.contract.Calibration). Temperature scaling changes no ranking, so no answer:
only how sure each answer says it is. It is applied to the flip-TTA mean of a face's
probabilities, as it was fitted, by every runtime (service.model.classifier.VersionClassifier).
"""

from __future__ import annotations

import numpy as np


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)`` per row, as float32: temperature scaling of
    the logits, from probabilities (the logits' per-row constant cancels). Zeros stay
    zeros; the trainer's twin is trainer.calibration.temper."""
    p = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(p) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def uncertain(top: float, below: float | None) -> bool | None:
    """Whether a face whose top probability is ``top`` is uncertain under the threshold
    ``below`` (None: there is no threshold, so the service cannot say). The confidence is
    compared as answered, to 4 decimals (service.api.serialize), so that a client comparing
    the answer's confidence with its threshold finds the flag the service set."""
    return None if below is None else bool(round(float(top), 4) < below)
