"""Open Inference Protocol inference requests and responses, JSON or with binary data.

A request is a JSON object, optionally followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header then gives the JSON's length, and each input
sent as bytes gives its size in ``parameters.binary_data_size`` (tritonclient sends numpy
inputs this way unless told otherwise). Outputs go back as bytes when the request asks
(``binary_data_output``, or per output ``binary_data``), after a JSON head whose length the
response's header gives. Everything wrong with a request is a BadRequest (400) that says
what; service.v2.tensors reads and writes the tensors themselves.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.v2.tensors import (
    DTYPES,
    Tensor,
    classify,
    from_bytes,
    from_json,
    is_int,
    to_bytes,
    to_json,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
_DIGITS = re.compile(r"[0-9]{1,18}")
_RESERVED = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: the request's default
    classification: int  # top-k as "score:index:label" strings (Triton's extension); 0 = off


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, Tensor]
    outputs: list[RequestedOutput] | None  # None: every output
    parameters: dict
    binary_output: bool  # the default for outputs that do not say


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip or deflate, as tritonclient can send),
    refused past ``limit`` bytes decompressed."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported")
    inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"the {encoding} body could not be decompressed: {e}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed body is larger than {limit} bytes")
    if not inflater.eof:
        raise BadRequest(f"the {encoding} body is truncated")
    return out


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request from the body and its Inference-Header-Content-Length."""
    head, binary = _split(body, header_length)
    obj = _json_object(head)
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("the request needs 'inputs', a non-empty list of tensors")
    inputs: dict[str, Tensor] = {}
    offset = 0
    for raw in raw_inputs:
        tensor, offset = _input(raw, binary, offset)
        if tensor.name in inputs:
            raise BadRequest(f"input '{tensor.name}' is given twice")
        inputs[tensor.name] = tensor
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data follow the inputs' "
            "binary_data_size values (or no input declares binary data)"
        )
    params = _parameters(obj.get("parameters"), "the request")
    rid = obj.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("'id' must be a string")
    return InferRequest(
        rid,
        inputs,
        _outputs(obj.get("outputs")),
        params,
        _flag(params, "binary_data_output", "the request") or False,
    )


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    value = header_length.strip()
    if not _DIGITS.fullmatch(value):  # ASCII only: "²".isdigit() is true, int("²") fails
        raise BadRequest(f"{HEADER_LENGTH} must be a non-negative integer, not {value!r}")
    n = int(value)
    if n > len(body):
        raise BadRequest(f"{HEADER_LENGTH} is {n} but the body has only {len(body)} bytes")
    if n == 0:  # as Triton: no header length, the whole body is JSON
        return body, b""
    return body[:n], body[n:]


def _json_object(head: bytes) -> dict:
    try:
        obj = json.loads(head)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"the inference request is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise BadRequest("the inference request must be a JSON object")
    return obj


def _input(raw, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise BadRequest("every input must be an object with a string 'name'")
    name = raw["name"]
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise BadRequest(f"input '{name}': datatype {datatype!r} is not one of {', '.join(DTYPES)}")
    shape = _shape(raw.get("shape"), name)
    count = math.prod(shape)
    params = _parameters(raw.get("parameters"), f"input '{name}'")
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in raw:
            raise BadRequest(f"input '{name}' has neither 'data' nor binary_data_size")
        array = from_json(raw["data"], datatype, shape, count, name, params)
        return Tensor(name, datatype, array), offset
    if "data" in raw:
        raise BadRequest(f"input '{name}' has both 'data' and binary_data_size")
    if not is_int(size) or size < 0:
        raise BadRequest(f"input '{name}': binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise BadRequest(
            f"input '{name}': binary_data_size is {size} but only "
            f"{len(binary) - offset} bytes of binary data are left"
        )
    chunk = binary[offset : offset + size]
    return Tensor(name, datatype, from_bytes(chunk, datatype, shape, count, name)), offset + size


# Bounds on a declared shape, checked before any arithmetic on it: the product of tens of
# thousands of huge dimensions (a 2 KB gzipped body) took math.prod seconds of CPU with
# the GIL held, and shapes numpy cannot reshape to were 500s. Our models' inputs have 1
# and 4 dimensions; Triton's own limit on dimensions is far above what any model uses.
MAX_DIMS, MAX_ELEMENTS = 8, 2**31 - 1


def _shape(value, name: str) -> list[int]:
    if not isinstance(value, list) or not all(is_int(d) and d >= 0 for d in value):
        raise BadRequest(f"input '{name}': shape must be a list of non-negative integers")
    if len(value) > MAX_DIMS:
        raise BadRequest(f"input '{name}': shape has {len(value)} dimensions; at most {MAX_DIMS}")
    if any(d > MAX_ELEMENTS for d in value) or math.prod(value) > MAX_ELEMENTS:
        raise BadRequest(f"input '{name}': shape {value} has more than {MAX_ELEMENTS} elements")
    return value


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    if any(k in value for k in _RESERVED):
        raise BadRequest(f"{where}: shared memory is not supported by this server")
    return value


def _flag(params: dict, key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{where}: parameter {key} must be true or false")
    return value


def _outputs(value) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest("'outputs' must be a list")
    out = []
    for raw in value:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise BadRequest("every requested output must be an object with a string 'name'")
        where = f"output '{raw['name']}'"
        params = _parameters(raw.get("parameters"), where)
        k = params.get("classification", 0)
        if not is_int(k) or k < 0:
            raise BadRequest(f"{where}: classification must be a non-negative integer")
        out.append(RequestedOutput(raw["name"], _flag(params, "binary_data", where), k))
    return out


def select_outputs(
    produced: dict[str, Tensor], req: InferRequest, labels: dict[str, list[str]]
) -> list[tuple[Tensor, bool]]:
    """The outputs the request asks for (all when it names none), each with whether it
    goes back as binary; names and classification were checked before the model ran."""
    if req.outputs is None:
        return [(t, req.binary_output) for t in produced.values()]
    out = []
    for r in req.outputs:
        t = produced[r.name]
        if r.classification:
            t = classify(t, r.classification, labels[r.name])
        out.append((t, req.binary_output if r.binary is None else r.binary))
    return out


def encode_response(head: dict, outputs: list[tuple[Tensor, bool]]) -> tuple[bytes, int | None]:
    """The response body, and the JSON's length when binary outputs follow it."""
    described, chunks = [], []
    for t, binary in outputs:
        d: dict = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if binary:
            raw = to_bytes(t)
            d["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            d["data"] = to_json(t)
        described.append(d)
    js = json.dumps({**head, "outputs": described}, separators=(",", ":")).encode()
    if not chunks:
        return js, None
    return b"".join([js, *chunks]), len(js)
