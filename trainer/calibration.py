"""Calibrated confidences: temperature scaling, the "uncertain" threshold, and how well
probabilities mean what they say (ECE, NLL, Brier).

A network's softmax is not a probability a user can act on: version 6 said 0.81 on
average where it was right 87.5% of the time on FER+, and 0.77 where it was right 44.6%
of the time on posed faces of other people. Temperature scaling (Guo et al. 2017, "On
Calibration of Modern Neural Networks") divides the log-probabilities by one scalar T
fitted by negative log-likelihood on held-out images: it changes no ranking, so no
answer, only how sure each answer says it is.

The trainer fits T on the validation split (FER+ PublicTest) with flip TTA, as the
service answers, and never on the test split. It writes T and the threshold below which
a face is flagged ``uncertain`` into the contract's ``calibration`` section; the service
applies them (service/model/calibration.py). The two sides share only those numbers, so the
formula is written twice: ``temper`` here and its twin there (tests/test_contract.py
checks they agree).

All functions take probabilities, not logits: the exported signature answers
probabilities, and ``softmax(log p / T)`` is temperature scaling of the logits exactly
(the logits' per-row constant cancels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

BINS = 15  # ECE bins, equal width over [0, 1], as Guo et al. and the issue measure it
TARGET_PRECISION = 0.95  # faces not flagged uncertain are at least this often right
# The smallest probability NLL takes the log of: a rounded answer (4 decimals) can be 0.
NLL_FLOOR = 1e-6


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)`` per row: the same ranking, sharper for T < 1,
    softer for T > 1. Zeros stay zeros."""
    p = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(p) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    p = np.asarray(probs, np.float64)[np.arange(len(y)), y]
    return float(-np.log(np.maximum(p, NLL_FLOOR)).mean())


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over images of the squared distance to the one-hot truth, summed over classes
    (0 is perfect, 2 the worst)."""
    p = np.asarray(probs, np.float64)
    onehot = np.eye(p.shape[1])[y]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict:
    """Top-1 confidence against accuracy in ``bins`` equal-width bins, and the expected
    calibration error: the images' share-weighted gap between the two."""
    p = np.asarray(probs, np.float64)
    conf, right = p.max(axis=1), (p.argmax(axis=1) == y)
    # A confidence of exactly 1 goes in the last bin; each bin is (lo, hi], the first [0, hi].
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, conf, bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, right.astype(float), bins) / np.maximum(count, 1)
    ece = float((count * np.abs(accuracy - mean_conf)).sum() / max(len(y), 1))
    return {
        "ece": ece,
        "count": count.tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": accuracy.tolist(),
    }


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    """How well ``probs`` are calibrated against labels ``y``, rounded for a report."""
    p = np.asarray(probs, np.float64)
    conf = p.max(axis=1)
    wrong = p.argmax(axis=1) != y
    return {
        "images": int(len(y)),
        "accuracy": round(float((~wrong).mean()), 4),
        "mean_confidence": round(float(conf.mean()), 4),
        "ece": round(reliability(p, y)["ece"], 4),
        "nll": round(nll(p, y), 4),
        "brier": round(brier(p, y), 4),
        # How often it is sure and wrong: the failure calibration is for.
        "wrong_at_0.9": round(float((wrong & (conf >= 0.9)).sum() / max(wrong.sum(), 1)), 4),
    }


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T that minimises the NLL of ``temper(probs, T)`` on labels ``y``.

    One scalar on a bounded log scale (0.05 to 20): NLL is convex in 1/T, so a bounded
    scalar search finds its minimum."""
    logp = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30))

    def loss(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(-(z[np.arange(len(y)), y] - log_norm).mean())

    res = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


@dataclass(frozen=True)
class Threshold:
    """The confidence below which an answer is flagged uncertain, and what it leaves."""

    below: float  # a face whose top probability is lower is uncertain
    coverage: float  # share of the images not flagged
    precision: float  # accuracy on those


def uncertain_threshold(
    probs: np.ndarray, y: np.ndarray, target: float = TARGET_PRECISION
) -> Threshold:
    """The lowest top-1 confidence at which the answers at or above it are at least
    ``target`` correct (the most coverage at that precision), rounded up to 4 decimals as
    the service compares it. No such confidence: 1.0, every face uncertain."""
    p = np.asarray(probs, np.float64)
    conf, right = p.max(axis=1), (p.argmax(axis=1) == y)
    order = np.argsort(-conf, kind="stable")
    conf, right = conf[order], right[order]
    precision = np.cumsum(right) / np.arange(1, len(right) + 1)
    # Only cut between different confidences: a threshold takes every tie or none.
    ends = np.flatnonzero(np.append(conf[1:] < conf[:-1], True))
    good = ends[precision[ends] >= target]
    if not len(good):
        return Threshold(1.0, 0.0, 0.0)
    below = float(np.ceil(conf[good.max()] * 1e4) / 1e4)
    c = covered(p, y, below)
    return Threshold(below, c["coverage"], c["precision_above"])


def calibrate(val_probs: np.ndarray, val_y: np.ndarray, fitted_on: dict) -> dict:
    """The contract's ``calibration`` section, fitted on the validation split's flip-TTA
    probabilities: T, the uncertain threshold on the calibrated probabilities, and the
    before/after scores on that split (``fitted_on`` says which images they are)."""
    t = round(fit_temperature(val_probs, val_y), 4)  # as written, and as the service applies it
    after = temper(val_probs, t)
    threshold = uncertain_threshold(after, val_y)
    return {
        "method": "temperature",
        "temperature": t,
        "applies_to": "the flip-TTA mean of each face's probabilities: softmax(log(p) / T)",
        "fitted_on": fitted_on,
        "uncertain_below": threshold.below,
        "uncertain_rule": (
            f"lowest calibrated confidence at which the answers at or above it were at "
            f"least {TARGET_PRECISION:.0%} right on the fitted split"
        ),
        "coverage": threshold.coverage,
        "precision_above": threshold.precision,
        "scores": {"val": before_after(val_probs, val_y, t, threshold.below)},
    }


def before_after(
    probs: np.ndarray, y: np.ndarray, temperature: float, below: float | None = None
) -> dict:
    """Scores of the raw probabilities and of the calibrated ones, with (given the
    threshold ``below``) the share of images not flagged uncertain and their accuracy."""
    after = temper(probs, temperature)
    out = {"before": scores(probs, y), "after": scores(after, y)}
    if below is not None:
        out["after"] |= covered(after, y, below)
    return out


def covered(probs: np.ndarray, y: np.ndarray, below: float) -> dict:
    """Share of images whose top probability is at least ``below`` (not uncertain), and
    the accuracy on them."""
    conf = np.asarray(probs).max(axis=1)
    kept = np.round(conf, 4) >= below  # as the service compares: the answer's 4 decimals
    right = np.asarray(probs).argmax(axis=1) == y
    return {
        "coverage": round(float(kept.mean()), 4) if len(y) else 0.0,
        "precision_above": round(float(right[kept].mean()), 4) if kept.any() else 0.0,
    }
