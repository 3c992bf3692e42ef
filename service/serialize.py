"""The JSON shapes of the analyses (service.analyzer's typed results), as openapi.yaml has them.

Rounding happens here and nowhere else: probabilities and confidences to 4 decimals,
times to 0.01 ms. /predict, /predict/batch and the video results (service.video.results)
answer in these shapes.
"""

from __future__ import annotations

import base64

import numpy as np

from service.analyzer import Box, FaceResult, ImageAnalysis
from service.errors import APIError


def image(a: ImageAnalysis, top_k: int) -> dict:
    """/predict's answer for one upload."""
    out: dict = {
        "width": a.width,
        "height": a.height,
        "model": {"name": a.model_name, "version": a.model_version},
        "detector": a.detector,
        "whole_image": a.whole_image,
        "faces_detected": a.faces_detected,
        "faces": [face(f, a.labels, top_k) for f in a.faces],
    }
    if a.annotated_jpeg is not None:
        out["annotated_image"] = base64.b64encode(a.annotated_jpeg).decode("ascii")
    out["timings_ms"] = timings_ms(a.seconds)
    return out


def face(f: FaceResult, labels: list[str], top_k: int) -> dict:
    """One face: its box, the detector's score, the top ``top_k`` emotions, all probabilities."""
    order = f.ranked()[:top_k]
    p = f.probs
    return {
        "box": box(f.box),
        "detector_score": f.score,
        "emotion": labels[int(order[0])],
        "confidence": round(float(p[order[0]]), 4),
        "top": [{"emotion": labels[int(i)], "probability": round(float(p[i]), 4)} for i in order],
        "probabilities": probabilities(p, labels),
    }


def box(b: Box) -> dict:
    return {"x": b.x, "y": b.y, "width": b.width, "height": b.height}


def probabilities(p: np.ndarray, labels: list[str]) -> dict:
    """Probabilities by label."""
    return {k: round(float(v), 4) for k, v in zip(labels, p, strict=True)}


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
