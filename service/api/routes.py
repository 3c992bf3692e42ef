"""HTTP endpoints: parse and validate, call one domain function, serialize."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import NotFound

from service import metrics
from service.api import serialize
from service.api.schemas import parse_options
from service.api.uploads import read_many, read_one
from service.errors import APIError
from service.state import current_state

bp = Blueprint("api", __name__)
SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    state = current_state()
    model = state.models.peek()
    ready = bool(model and model.ready and model.warm)
    body = {
        "ready": ready,
        "model": model.name if model else "",
        "version": model.version if model else "",
        "labels": model.labels if model else [],
        "warm": bool(model and model.warm),
        "runtime": model.runtime if model else "",
        "precision": model.precision if model else "",
        "detector": state.detector.name,
        "detector_runtime": state.detector.runtime,
        "detector_precision": state.detector.precision,
    }
    if not ready:
        body["error"] = state.models.status_error()
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
    state = current_state()
    model = state.models.current()
    contract = model.contract
    return jsonify(
        name=model.name,
        version=model.version,
        labels=model.labels,
        input_size=model.input_size,
        metrics={split: asdict(h) for split, h in contract.metrics.items()},
        preprocessing=contract.preprocessing.written,
        face_crop=contract.face_crop.written,
        created=contract.created,
        calibration=serialize.calibration(model.calibration),
        detector=state.detector.name,
        detector_runtime=state.detector.runtime,
        detector_precision=state.detector.precision,
        flip_tta=state.settings.flip_tta,
        device=model.device,
        runtime=model.runtime,
        precision=model.precision,
        batching=state.settings.batch,
    )


@bp.post("/predict")
def predict():
    state = current_state()
    data, raw = read_one(request)
    opts = parse_options(raw, state.settings.max_faces)
    analysis = state.analyzer.analyze(data, opts)
    metrics.observe_image(analysis.seconds, analysis.emotions, analysis.uncertain)
    body = serialize.image(analysis, opts.top_k)
    g.log_extra = {"faces": len(analysis.faces), "timings_ms": body["timings_ms"]}
    return jsonify(body)


@bp.post("/predict/batch")
def predict_batch():
    state = current_state()
    files, raw = read_many(request, state.settings.max_batch_images)
    opts = parse_options(raw, state.settings.max_faces)
    state.models.current()  # 503 before reading any image when there is no model
    results = []
    for name, data in files:
        try:
            analysis = state.analyzer.analyze(data, opts)
        except APIError as e:  # one bad image does not fail the others
            metrics.ERRORS.labels(e.code).inc()
            results.append(serialize.batch_error(name, e))
        else:
            metrics.observe_image(analysis.seconds, analysis.emotions, analysis.uncertain)
            results.append(serialize.batch_item(name, analysis, opts.top_k))
    return jsonify(results=results)
