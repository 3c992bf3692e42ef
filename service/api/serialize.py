"""The JSON shapes of the analyses (service.analyzer's typed results), as openapi.yaml has them.

/predict, /predict/batch and the video results (service.video.results) answer in these
shapes, and their numbers are rounded by the helpers here and nowhere else: probabilities
and confidences to 4 decimals, times and frame rates to 3, stage timings to 0.01 ms. Two
values are rounded before they get here: a detector's score, to 4 decimals by the detector
(service.detection), as /v2 answers it too; and the label drawn on an annotated image
(service.analyzer.annotate), which shows the confidence as answered here.
"""

from __future__ import annotations

import base64

import numpy as np

from service.analyzer import Box, FaceResult, ImageAnalysis
from service.errors import APIError
from service.model.calibration import uncertain
from service.model.contract import Calibration


def image(a: ImageAnalysis, top_k: int) -> dict:
    """/predict's answer for one upload."""
    out: dict = {
        "width": a.width,
        "height": a.height,
        "model": model(a.model_name, a.model_version, a.calibrated),
        "uncertain_below": a.uncertain_below,
        "detector": a.detector,
        "whole_image": a.whole_image,
        "faces_detected": a.faces_detected,
        "faces": [face(f, a.labels, top_k, a.uncertain_below) for f in a.faces],
    }
    if a.annotated_jpeg is not None:
        out["annotated_image"] = base64.b64encode(a.annotated_jpeg).decode("ascii")
    out["timings_ms"] = timings_ms(a.seconds)
    return out


def model(name: str, version: str, calibrated: bool) -> dict:
    """Which model answered, and whether its probabilities are calibrated."""
    return {"name": name, "version": version, "calibrated": calibrated}


def face(f: FaceResult, labels: list[str], top_k: int, below: float | None = None) -> dict:
    """One face: its box, the detector's score, the top ``top_k`` emotions, whether it is
    uncertain under the threshold ``below`` (None: none in effect), all probabilities."""
    order = f.ranked()[:top_k]
    p = f.probs
    return {
        "box": box(f.box),
        "detector_score": f.score,
        "emotion": labels[int(order[0])],
        "confidence": probability(p[order[0]]),
        "uncertain": uncertain(p[order[0]], below),
        "top": [{"emotion": labels[int(i)], "probability": probability(p[i])} for i in order],
        "probabilities": probabilities(p, labels),
    }


def calibration(cal: Calibration | None) -> dict | None:
    """The calibration a model applies, as /v1/models shows it (None: the network's
    probabilities are served as they are)."""
    if cal is None:
        return None
    w = cal.written
    return {
        "method": w.get("method", "temperature"),
        "temperature": cal.temperature,
        "uncertain_below": cal.uncertain_below,
        "coverage": w.get("coverage"),
        "fitted_on": w.get("fitted_on"),
    }


def box(b: Box) -> dict:
    return {"x": b.x, "y": b.y, "width": b.width, "height": b.height}


def probabilities(p: np.ndarray, labels: list[str]) -> dict:
    """Probabilities by label."""
    return {k: probability(v) for k, v in zip(labels, p, strict=True)}


def probability(p: float | np.floating) -> float:
    """A probability or confidence as answered: 4 decimals."""
    return round(float(p), 4)


def seconds(t: float | None) -> float | None:
    """A time in seconds as answered: 3 decimals (1 ms)."""
    return None if t is None else round(t, 3)


def fps(rate: float | None) -> float | None:
    """Frames per second as answered: 3 decimals."""
    return None if rate is None else round(rate, 3)


def timings_ms(seconds: dict[str, float]) -> dict:
    """Each stage's time and their total, ms."""
    out = {stage: round(s * 1000, 2) for stage, s in seconds.items()}
    out["total"] = round(sum(seconds.values()) * 1000, 2)
    return out


def batch_item(filename: str, a: ImageAnalysis, top_k: int) -> dict:
    """One image of /predict/batch that was analysed."""
    return {"filename": filename, "ok": True, "result": image(a, top_k)}


def batch_error(filename: str, e: APIError) -> dict:
    """One image of /predict/batch that was not (the others still are)."""
    return {
        "filename": filename,
        "ok": False,
        "status": e.status,
        "error": {"code": e.code, "message": e.message},
    }
