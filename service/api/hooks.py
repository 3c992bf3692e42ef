"""Per-request plumbing: request id, API key, metrics and one access-log line."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from flask import Flask, g, request

from service import metrics
from service.errors import V2_PREFIX, Unauthorized
from service.state import current_state

log = logging.getLogger("service.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PROTECTED = ("/predict",)


def register(app: Flask) -> None:
    app.before_request(_start)
    app.before_request(_check_api_key)
    app.after_request(_finish)
    app.teardown_request(_teardown)


def _start() -> None:
    rid = request.headers.get("X-Request-ID", "")
    g.request_id = rid if REQUEST_ID.match(rid) else uuid.uuid4().hex
    g.t0 = time.perf_counter()
    g.in_flight = True
    metrics.IN_FLIGHT.inc()


def _check_api_key() -> None:
    key = app_key()
    if key and _protected(request.path):
        given = request.headers.get("X-API-Key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise Unauthorized("missing or wrong X-API-Key header")


def _protected(path: str) -> bool:
    """/predict* and the Open Inference Protocol's inference endpoints need the key."""
    v2_infer = path.startswith(V2_PREFIX + "/") and path.endswith("/infer")
    return path.startswith(PROTECTED) or v2_infer


def app_key() -> str:
    return current_state().settings.api_key


def _endpoint() -> str:
    # The route pattern, not the raw path, so unknown URLs don't explode label counts.
    return request.url_rule.rule if request.url_rule else "unmatched"


def _finish(resp):
    resp.headers["X-Request-ID"] = g.get("request_id", "")
    seconds = time.perf_counter() - g.get("t0", time.perf_counter())
    endpoint = _endpoint()
    metrics.REQUESTS.labels(endpoint, request.method, str(resp.status_code)).inc()
    metrics.LATENCY.labels(endpoint, request.method).observe(seconds)
    if resp.status_code >= 400 and "error_code" in g:  # set by the error handlers
        metrics.ERRORS.labels(g.error_code).inc()
    if endpoint not in ("/metrics", "/health"):
        log.info(
            "request",
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": resp.status_code,
                "ms": round(seconds * 1000, 2),
                **g.get("log_extra", {}),
            },
        )
    return resp


def _teardown(exc) -> None:
    if g.pop("in_flight", False):
        metrics.IN_FLIGHT.dec()
