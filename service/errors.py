"""One error hierarchy, one JSON error shape, all handlers registered in one place.

Every error response is ``{"error": {"code", "message"[, "fields"]}, "request_id"}``,
except under ``/v2``, where the Open Inference Protocol's ``{"error": "<message>"}`` is.
The handlers record each response's error code in ``g.error_code`` for the metrics
(service.api.hooks), so nothing reads a code back from a body.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("service.errors")


class APIError(Exception):
    """An error the client should see; subclasses fix the HTTP status and code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.headers = headers or {}


class BadImage(APIError):
    status, code = 400, "bad_image"


class BadRequest(APIError):
    status, code = 400, "bad_request"


class Unauthorized(APIError):
    status, code = 401, "unauthorized"


class PayloadTooLarge(APIError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(APIError):
    status, code = 415, "unsupported_media_type"


class InvalidOptions(APIError):
    status, code = 422, "invalid_options"


class NotReady(APIError):
    status, code = 503, "model_not_ready"

    def __init__(self, message: str = "the model is not loaded yet", retry_after: int = 5):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def error_body(
    code: str, message: str, fields: dict | None = None, request_id: str | None = None
) -> dict:
    """The one error shape; ``request_id`` defaults to the current request's (gunicorn's
    own refusals, outside any request, pass "")."""
    err: dict = {"code": code, "message": message}
    if fields:
        err["fields"] = fields
    rid = g.get("request_id", "") if request_id is None else request_id
    return {"error": err, "request_id": rid}


V2_PREFIX = "/v2"  # the Open Inference Protocol's paths (service.v2.routes)


def _body(code: str, message: str, fields: dict | None = None) -> dict:
    """The error body for the current request's path."""
    if request.path == V2_PREFIX or request.path.startswith(V2_PREFIX + "/"):
        return {"error": message}
    return error_body(code, message, fields)


def _response(code: str, message: str, fields: dict | None = None) -> Response:
    g.error_code = code  # service.api.hooks counts it, whichever shape the body has
    return jsonify(_body(code, message, fields))


def _json(code: str, message: str, status: int, fields=None, headers=None) -> Response:
    resp = _response(code, message, fields)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# Codes that are not the reason phrase in snake case, so they match the service's own.
_HTTP_CODES = {413: "payload_too_large", 431: "header_too_large", 500: "internal_error"}


def code_for_status(status: int | None, reason: str | None) -> str:
    """The error code of an HTTP status: ``_HTTP_CODES`` or the reason phrase, snake case."""
    if status in _HTTP_CODES:
        return _HTTP_CODES[status]
    return (reason or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def api_error(e: APIError):
        return _json(e.code, e.message, e.status, e.fields, e.headers)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        # Start from Werkzeug's response so headers such as Allow (405) survive.
        resp = e.get_response()
        body = _response(code_for_status(e.code, e.name), e.description or e.name)
        resp.set_data(body.get_data())
        resp.content_type = "application/json"
        return resp

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unhandled error")
        return _json("internal_error", "internal server error", 500)
