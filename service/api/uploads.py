"""Read the image bytes and raw options out of a request, whatever way it was sent.

Three ways in: multipart form field ``image``, a raw body with an ``image/*`` content
type, or JSON ``{"image": "<base64>", ...options}``. Options also come from the query.
"""

from __future__ import annotations

import base64
import binascii
import json

from flask import Request
from werkzeug.datastructures import FileStorage

from service.errors import BadImage, BadRequest, UnsupportedMediaType

IMAGE_FIELD = "image"


def single(values: list, what: str):
    """The one value given for ``what``, or BadRequest if it was repeated."""
    if len(values) > 1:
        raise BadRequest(f"send one {what}, not {len(values)}", fields={what: ["repeated"]})
    return values[0]


def query_options(request: Request) -> dict:
    return {k: single(request.args.getlist(k), k) for k in request.args}


def read_one(request: Request) -> tuple[bytes, list[dict]]:
    """The image bytes and the raw options of a /predict request, per source (query, body)."""
    ctype = request.mimetype or ""
    opts = query_options(request)
    if ctype == "multipart/form-data":
        form = form_options(request)
        files = request.files.getlist(IMAGE_FIELD)
        if not files:
            raise BadRequest(
                f"multipart request has no file field {IMAGE_FIELD!r}",
                fields={IMAGE_FIELD: ["missing"]},
            )
        data = single(files, IMAGE_FIELD).read()
        return data, [opts, form]
    if ctype == "application/json":
        body = parse_json(request.get_data(cache=False))
        if not isinstance(body, dict):
            raise BadRequest(f"the JSON body is {_json_type(body)}, not an object")
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
    opts = [query_options(request), form_options(request)]
    files: list[FileStorage] = [f for _, f in request.files.items(multi=True)]
    if not files:
        raise BadRequest("the request has no files", fields={IMAGE_FIELD: ["missing"]})
    if len(files) > limit:
        raise BadRequest(
            f"{len(files)} images in one batch; the limit is {limit}",
            fields={IMAGE_FIELD: [f"at most {limit}"]},
        )
    return [(f.filename or "", f.read()) for f in files], opts


# Integers longer than this stay out of int(): Python refuses to convert more than 4,300
# digits (ValueError), and no option needs more than a few. As a float such a number is
# out of every option's range, or +-inf past 308 digits, which the option schema rejects
# by the option's name ("Number too large").
_MAX_INT_DIGITS = 100


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def parse_json(data: bytes):
    """A request body as JSON (RFC 8259: no NaN or Infinity), or BadRequest saying why not.

    Parsed here rather than with ``request.get_json`` so that each way a body can fail
    gets its own message instead of one "not a JSON object": bad UTF-8, a syntax error
    and where it is, nesting too deep for the parser (RecursionError, which would
    otherwise be a 500).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the JSON body is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except json.JSONDecodeError as e:
        raise BadRequest(
            f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except ValueError as e:  # NaN / Infinity
        raise BadRequest(f"the body is not valid JSON: {e}") from None


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def form_options(request: Request, file_field: str = IMAGE_FIELD) -> dict:
    """The text fields of a multipart request, each given once; ``file_field`` sent as
    text rather than as a file is refused with a message that says so."""
    if file_field in request.form:
        raise BadRequest(
            f"the multipart field {file_field!r} came as text: send it as a file "
            f"(a part with a filename, as curl -F '{file_field}=@file' does)",
            fields={file_field: ["not a file"]},
        )
    return {k: single(request.form.getlist(k), k) for k in request.form}


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
