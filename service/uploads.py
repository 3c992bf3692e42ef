"""Read the image bytes and raw options out of a request, whatever way it was sent.

Three ways in: multipart form field ``image``, a raw body with an ``image/*`` content
type, or JSON ``{"image": "<base64>", ...options}``. Options also come from the query.
"""

from __future__ import annotations

import base64
import binascii

from flask import Request
from werkzeug.datastructures import FileStorage

from service.errors import BadImage, BadRequest, UnsupportedMediaType

IMAGE_FIELD = "image"


def _single(values: list, what: str):
    if len(values) > 1:
        raise BadRequest(f"send one {what}, not {len(values)}", fields={what: ["repeated"]})
    return values[0]


def query_options(request: Request) -> dict:
    return {k: _single(request.args.getlist(k), k) for k in request.args}


def read_one(request: Request) -> tuple[bytes, list[dict]]:
    """The image bytes and the raw options of a /predict request, per source (query, body)."""
    ctype = request.mimetype or ""
    opts = query_options(request)
    if ctype == "multipart/form-data":
        files = request.files.getlist(IMAGE_FIELD)
        if not files:
            raise BadRequest(
                f"multipart request has no file field {IMAGE_FIELD!r}",
                fields={IMAGE_FIELD: ["missing"]},
            )
        data = _single(files, IMAGE_FIELD).read()
        return data, [opts, _form_options(request)]
    if ctype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the body is not a JSON object")
        body = dict(body)
        if IMAGE_FIELD not in body:
            raise BadRequest(
                f"JSON body has no {IMAGE_FIELD!r} field", fields={IMAGE_FIELD: ["missing"]}
            )
        data = b64decode(body.pop(IMAGE_FIELD))
        return data, [opts, body]
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return request.get_data(cache=False), [opts]
    raise UnsupportedMediaType(
        f"content type {ctype or '(none)'} is not accepted: send multipart/form-data with "
        "field 'image', an image/* body, or application/json with a base64 'image'"
    )


def read_many(request: Request, limit: int) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """(file name, bytes) of every file of a multipart /predict/batch request, in order."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            "/predict/batch takes multipart/form-data with one or "
            "more 'image' (or 'images') file fields"
        )
    files: list[FileStorage] = [f for _, f in request.files.items(multi=True)]
    if not files:
        raise BadRequest("the request has no files", fields={IMAGE_FIELD: ["missing"]})
    if len(files) > limit:
        raise BadRequest(
            f"{len(files)} images in one batch; the limit is {limit}",
            fields={IMAGE_FIELD: [f"at most {limit}"]},
        )
    opts = [query_options(request), _form_options(request)]
    return [(f.filename or "", f.read()) for f in files], opts


def _form_options(request: Request) -> dict:
    return {k: _single(request.form.getlist(k), k) for k in request.form}


def b64decode(value) -> bytes:
    if not isinstance(value, str):
        raise BadImage("'image' must be a base64 string", fields={IMAGE_FIELD: ["not a string"]})
    if value.startswith("data:") and "," in value:  # data URLs from browsers
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage(
            "'image' is not valid base64", fields={IMAGE_FIELD: ["invalid base64"]}
        ) from None
