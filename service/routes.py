"""HTTP endpoints: parse and validate, call one domain function, serialize."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import NotFound

from service import metrics
from service.errors import APIError
from service.schemas import parse_options
from service.uploads import read_many, read_one

bp = Blueprint("api", __name__)
SPEC = Path(__file__).resolve().parent.parent / "openapi.yaml"


def _state():
    return current_app.extensions["fer"]


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    models = _state().models
    model = models.peek()
    ready = bool(model and model.ready and model.warm)
    body = {
        "ready": ready,
        "model": model.name if model else "",
        "version": model.version if model else "",
        "labels": model.labels if model else [],
        "warm": bool(model and model.warm),
        "runtime": model.runtime if model else "",
        "precision": model.precision if model else "",
        "detector": _state().detector.name,
    }
    if not ready:
        body["error"] = models.status_error()
        resp = jsonify(body)
        resp.status_code, resp.headers["Retry-After"] = 503, "5"
        return resp
    return jsonify(body)


@bp.get("/openapi.yaml")
def openapi_spec():
    if not SPEC.is_file():
        raise NotFound("this installation has no openapi.yaml")
    return Response(SPEC.read_bytes(), content_type="application/yaml")


@bp.get("/metrics")
def prometheus():
    body, ctype = metrics.exposition()
    return Response(body, content_type=ctype)


@bp.get("/v1/models")
def models():
    model = _state().models.current()
    meta = model.metadata
    return jsonify(
        name=model.name,
        version=model.version,
        labels=model.labels,
        input_size=model.input_size,
        metrics=_headline(meta.get("metrics", {})),
        preprocessing=meta.get("preprocessing", {}),
        face_crop=meta.get("face_crop", {}),
        created=meta.get("created"),
        detector=_state().detector.name,
        flip_tta=_state().settings.flip_tta,
        device=model.device,
        runtime=model.runtime,
        precision=model.precision,
        batching=_state().settings.batch,
    )


def _headline(m: dict) -> dict:
    return {k: {f: v.get(f) for f in ("images", "accuracy", "macro_f1")} for k, v in m.items()}


@bp.post("/predict")
def predict():
    data, raw = read_one(request)
    opts = parse_options(raw, _state().settings.max_faces)
    result = _state().analyzer.analyze(data, opts)
    metrics.observe_result(result)
    g.log_extra = {"faces": len(result["faces"]), "timings_ms": result["timings_ms"]}
    return jsonify(result)


@bp.post("/predict/batch")
def predict_batch():
    files, raw = read_many(request, _state().settings.max_batch_images)
    opts = parse_options(raw, _state().settings.max_faces)
    _state().models.current()  # 503 before reading any image when there is no model
    results = []
    for name, data in files:
        try:
            res = _state().analyzer.analyze(data, opts)
            metrics.observe_result(res)
            results.append({"filename": name, "ok": True, "result": res})
        except APIError as e:  # one bad image does not fail the others
            metrics.ERRORS.labels(e.code).inc()
            results.append(
                {
                    "filename": name,
                    "ok": False,
                    "status": e.status,
                    "error": {"code": e.code, "message": e.message},
                }
            )
    return jsonify(results=results)
