"""Tensors of the Open Inference Protocol as JSON values and as Triton's binary data.

In JSON a tensor's ``data`` is its elements in row-major order, flat or nested; BYTES
elements are strings (UTF-8, or base64 with the tensor parameter ``content_type:
base64``, MLServer's convention). As binary data (Triton's extension, tritonclient's
default for numpy inputs) fixed-size elements are little-endian, and each BYTES element is
a 4-byte little-endian length followed by its bytes. Whatever does not fit is a
BadRequest (400) naming the tensor.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from service.errors import BadRequest

# Every datatype of the protocol (BF16 is Triton's own and has no numpy type).
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(t)
    for name, t in {
        "BOOL": "?",
        "UINT8": "<u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "<i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
        "BYTES": "O",
    }.items()
}


@dataclass(frozen=True)
class Tensor:
    """A named tensor; BYTES tensors hold ``bytes`` objects."""

    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def object_array(items: list, shape: list[int]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def from_bytes(chunk: bytes, datatype: str, shape: list[int], count: int, name: str):
    if datatype == "BYTES":
        items = list(_bytes_elements(chunk, name))
        if len(items) != count:
            raise BadRequest(
                f"input '{name}': shape {shape} needs {count} BYTES elements, "
                f"the binary data holds {len(items)}"
            )
        return object_array(items, shape)
    dtype = DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': shape {shape} of {datatype} needs {count * dtype.itemsize} "
            f"bytes, binary_data_size is {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype).reshape(shape)


def _bytes_elements(chunk: bytes, name: str) -> Iterator[bytes]:
    pos = 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise BadRequest(f"input '{name}': a BYTES element's 4-byte length is cut short")
        (n,) = struct.unpack_from("<I", chunk, pos)
        if pos + 4 + n > len(chunk):
            raise BadRequest(f"input '{name}': a BYTES element is longer than the data left")
        yield chunk[pos + 4 : pos + 4 + n]
        pos += 4 + n


def from_json(data, datatype: str, shape: list[int], count: int, name: str, params: dict):
    flat = _flatten(data, name)
    if len(flat) != count:
        raise BadRequest(
            f"input '{name}': shape {shape} needs {count} elements, 'data' has {len(flat)}"
        )
    if datatype == "BYTES":
        b64 = params.get("content_type") == "base64"  # MLServer's way to send raw bytes
        return object_array([_bytes_value(v, name, b64) for v in flat], shape)
    dtype = DTYPES[datatype]
    if datatype == "BOOL":
        ok = all(isinstance(v, bool) for v in flat)
    elif datatype.startswith("FP"):
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)
    else:
        info = np.iinfo(dtype)
        ok = all(is_int(v) and info.min <= v <= info.max for v in flat)
    try:
        if ok:
            return np.array(flat, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError):  # an integer too large even for FP64
        pass
    raise BadRequest(f"input '{name}': 'data' holds values that are not {datatype}")


def _flatten(data, name: str) -> list:
    """Row-major elements of flat or nested JSON lists (the protocol allows both)."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    out: list = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _bytes_value(v, name: str, b64: bool) -> bytes:
    if not isinstance(v, str):
        raise BadRequest(f"input '{name}': BYTES elements in JSON must be strings")
    if not b64:
        return v.encode()
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"input '{name}': an element is not valid base64") from None


def classify(t: Tensor, k: int, labels: list[str]) -> Tensor:
    """Triton's classification extension: the top ``k`` of the last axis as BYTES
    "score:index:label", highest first."""
    scores = t.array.reshape(-1, t.array.shape[-1])
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    items = [
        f"{float(row[i]):f}:{i}:{labels[i]}".encode()
        for row, idx in zip(scores, order, strict=True)
        for i in idx
    ]
    return Tensor(t.name, "BYTES", object_array(items, [*t.array.shape[:-1], k]))


def to_bytes(t: Tensor) -> bytes:
    if t.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in t.array.ravel())
    return np.ascontiguousarray(t.array, DTYPES[t.datatype]).tobytes()


def to_json(t: Tensor) -> list:
    if t.datatype == "BYTES":
        return [b.decode("utf-8", "replace") for b in t.array.ravel()]
    return t.array.ravel().tolist()
