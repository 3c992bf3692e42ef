"""Open Inference Protocol (KServe v2 / Triton) REST endpoints beside the service's own API.

Health, server and model metadata, model readiness and inference, for the two models of
service.v2.models; requests and responses on the wire are service.v2.messages' business.
Errors under ``/v2`` take the protocol's shape, ``{"error": "<message>"}``
(service.errors); the API key, request ids, access log and metrics are the service's
(service.api.hooks).
"""

from __future__ import annotations

from importlib import metadata as dist

from flask import Blueprint, Response, current_app, g, jsonify, request

from service.errors import V2_PREFIX, APIError
from service.state import current_state
from service.v2 import messages as v2_messages
from service.v2 import models as v2_models

bp = Blueprint("v2", __name__, url_prefix=V2_PREFIX)
SERVER_NAME = "fer-service"
EXTENSIONS = ["binary_tensor_data", "classification"]


def _lookup(name: str, version: str | None):
    state = current_state()
    return v2_models.lookup(state.models, name, version, state.detector.name)


@bp.get("")
def server_metadata():
    try:
        version = dist.version(SERVER_NAME)
    except dist.PackageNotFoundError:
        version = "unknown"
    return jsonify(name=SERVER_NAME, version=version, extensions=EXTENSIONS)


@bp.get("/health/live")
def live():
    return jsonify(live=True)


@bp.get("/health/ready")
def ready():
    model = current_state().models.peek()
    ok = bool(model and model.ready and model.warm)
    # The protocol: 200 means ready, a 4xx not ready (Triton answers 400).
    return jsonify(ready=ok), 200 if ok else 400


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    served, model = _lookup(name, version)
    return jsonify(v2_models.metadata(served, model))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    try:
        _lookup(name, version)
    except v2_models.ModelNotFound:
        raise
    except APIError:  # loading, or a version that is not served: not ready
        return jsonify(name=name, ready=False), 400
    return jsonify(name=name, ready=True)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    served, model = _lookup(name, version)
    req = _read_request()
    state = current_state()
    limits = v2_models.InferLimits.from_settings(state.settings)
    produced = v2_models.infer(served, model, req, state.analyzer, limits)
    rid = req.id if req.id is not None else g.get("request_id", "")
    faces = len(produced[v2_models.PROBS].array)
    g.log_extra = {"model": served.name, "version": model.version, "infer_id": rid, "faces": faces}
    outputs = v2_messages.select_outputs(produced, req, v2_models.labels_of(model))
    head = {"model_name": served.name, "model_version": model.version, "id": rid}
    return _respond(*v2_messages.encode_response(head, outputs))


def _read_request() -> v2_messages.InferRequest:
    body = v2_messages.decompress(
        request.get_data(cache=False),
        request.headers.get("Content-Encoding", ""),
        current_app.config["MAX_CONTENT_LENGTH"],
    )
    return v2_messages.parse_request(body, request.headers.get(v2_messages.HEADER_LENGTH))


def _respond(data: bytes, json_length: int | None) -> Response:
    if json_length is None:
        return Response(data, content_type="application/json")
    resp = Response(data, content_type="application/octet-stream")
    resp.headers[v2_messages.HEADER_LENGTH] = str(json_length)
    return resp
