"""POST /predict/video: parse and validate, open the video, answer JSON or NDJSON lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from flask import Blueprint, Request, Response, g, jsonify, request
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.datastructures import FileStorage

from service import metrics
from service.api.uploads import form_options, query_options, single
from service.errors import APIError, BadRequest, UnsupportedMediaType, error_body
from service.state import current_state, state_of
from service.video import results
from service.video.analysis import Limits, VideoAnalysis
from service.video.options import parse_video_options

log = logging.getLogger("service.video")
bp = Blueprint("video", __name__)
FIELD = "video"
CHUNK = 1 << 20
NDJSON = "application/x-ndjson"
# One analysis may use this share of the gunicorn worker timeout, so that the answer (or
# the stream's error line) is sent before the worker would be killed.
DEADLINE_SHARE = 0.75


@bp.record_once
def _setup(setup: BlueprintSetupState) -> None:
    state_of(setup.app).scratch.sweep()  # what a killed worker left behind


@bp.post("/predict/video")
def predict_video():
    state = current_state()
    settings = state.settings
    request.max_content_length = int(settings.video_max_upload_mb * 2**20)
    model = state.models.current()  # 503 before reading the upload when there is no model
    chunks, raw = _upload(request)
    opts, stream = parse_video_options(raw, settings.max_faces)
    limits = Limits(
        settings.video_max_seconds,
        settings.video_max_frames,
        settings.max_pixels,
        settings.timeout * DEADLINE_SHARE,
    )
    with state.scratch.file(chunks, request.max_content_length) as path:
        # Opened, the file is no longer needed by name: it goes when this block ends.
        analysis = VideoAnalysis(
            path, state.analyzer, model, opts, limits, settings.threads_per_worker()
        )
    if stream:
        return Response(_lines(analysis, g.get("request_id", "")), mimetype=NDJSON)
    try:
        body = results.whole(analysis, _observed(analysis))
    finally:
        analysis.close()
    g.log_extra = {"frames": body["frames_analysed"], "tracks": len(body["tracks"])}
    return jsonify(body)


def _observed(a: VideoAnalysis) -> Iterator:
    last = a.start
    for f in a.frames():
        metrics.observe_video_frame(f.seconds)
        last = f.time
        yield f
    metrics.VIDEO_SECONDS.observe((a.end if a.end is not None else last) - a.start)


def _lines(a: VideoAnalysis, request_id: str) -> Iterator[str]:
    """The NDJSON answer: a header line, one line per frame, a summary line (or an error
    line, in the one error shape, if the analysis fails part-way)."""
    labels, totals = a.model.labels, results.Totals()
    try:
        yield _line({"type": "video", **results.header(a), "frames_expected": a.expected_frames})
        for f in _observed(a):
            totals.add(f)
            yield _line({"type": "frame", **results.frame(f, labels, a.opts.top_k, a.below)})
        yield _line({"type": "summary", **results.summary(a, totals)})
    except APIError as e:
        metrics.ERRORS.labels(e.code).inc()
        yield _line({"type": "error", **error_body(e.code, e.message, e.fields, request_id)})
    except Exception:  # noqa: BLE001 - the status is sent: say so in the stream, log it
        log.exception("video analysis failed", extra={"request_id": request_id})
        metrics.ERRORS.labels("internal_error").inc()
        body = error_body("internal_error", "internal server error", None, request_id)
        yield _line({"type": "error", **body})
    finally:
        a.close()


def _line(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def _upload(req: Request) -> tuple[Iterator[bytes], list[dict]]:
    """The video's bytes (as chunks) and the raw options, per source (query, form)."""
    ctype = req.mimetype or ""
    opts = query_options(req)
    if ctype == "multipart/form-data":
        form = form_options(req, FIELD)
        files = req.files.getlist(FIELD)
        if not files:
            raise BadRequest(
                f"multipart request has no file field {FIELD!r}", fields={FIELD: ["missing"]}
            )
        return _chunks(single(files, FIELD)), [opts, form]
    if ctype.startswith("video/") or ctype == "application/octet-stream":
        return iter(lambda: req.stream.read(CHUNK), b""), [opts]
    raise UnsupportedMediaType(
        f"content type {ctype or '(none)'} is not accepted: send multipart/form-data with "
        f"field {FIELD!r} or a video/* body"
    )


def _chunks(f: FileStorage) -> Iterator[bytes]:
    return iter(lambda: f.stream.read(CHUNK), b"")
