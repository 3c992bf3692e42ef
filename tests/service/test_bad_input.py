"""Bad and odd uploads: each gets the right status and a JSON error; nothing is a 5xx."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, jpeg_bytes


def _png(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **kw)
    return buf.getvalue()


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _bomb_png(side: int) -> bytes:
    """A valid PNG header claiming side x side pixels, in a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * side
    idat = zlib.compress(row * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _huge_iccp_png() -> bytes:
    good = _png(np.zeros((8, 8), np.uint8))
    profile = zlib.compress(b"\x00" * 50_000_000, 9)  # ~50 MB once inflated
    data = b"icc\x00\x00" + profile
    chunk = (
        struct.pack(">I", len(data))
        + b"iCCP"
        + data
        + struct.pack(">I", zlib.crc32(b"iCCP" + data))
    )
    return good[:33] + chunk + good[33:]


GRAY = np.full((64, 64), 120, np.uint8)
RGB = np.full((64, 64, 3), 120, np.uint8)

# (name, body, content type, expected status, expected error code or None for 200)
RAW_CASES = [
    ("empty body", b"", "image/jpeg", 400, "bad_image"),
    ("text posing as JPEG", b"hello, I am not a picture", "image/jpeg", 400, "bad_image"),
    ("truncated JPEG", jpeg_bytes(RGB)[:200], "image/jpeg", 400, "bad_image"),
    ("truncated PNG", _png(RGB)[:60], "image/png", 400, "bad_image"),
    ("decompression bomb", _bomb_png(30_000), "image/png", 413, "image_too_large"),
    ("huge iCCP chunk", _huge_iccp_png(), "image/png", None, None),
    ("PDF", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "image/png", 400, "bad_image"),
    (
        "SPIDER header that breaks Pillow's plugin",
        (ROOT / "tests/fuzz/regressions/spider-stkoffset-attributeerror.bin").read_bytes(),
        "image/jpeg",
        400,
        "bad_image",
    ),
    (
        "ICO format",
        _encode(Image.fromarray(RGB), "ICO"),
        "image/x-icon",
        415,
        "unsupported_media_type",
    ),
    ("1x1 image", _png(np.zeros((1, 1), np.uint8)), "image/png", 200, None),
    ("CMYK JPEG", _encode(Image.fromarray(RGB).convert("CMYK"), "JPEG"), "image/jpeg", 200, None),
    (
        "16-bit PNG",
        _encode(Image.fromarray(GRAY.astype(np.uint16) * 256), "PNG"),
        "image/png",
        200,
        None,
    ),
    ("RGBA PNG", _png(np.dstack([RGB, np.full((64, 64), 128, np.uint8)])), "image/png", 200, None),
    ("palette GIF", _encode(Image.fromarray(RGB).convert("P"), "GIF"), "image/gif", 200, None),
    ("WebP", _encode(Image.fromarray(RGB), "WEBP"), "image/webp", 200, None),
    ("BMP", _encode(Image.fromarray(RGB), "BMP"), "image/bmp", 200, None),
    ("TIFF", _encode(Image.fromarray(RGB), "TIFF"), "image/tiff", 200, None),
    (
        "float TIFF",
        _encode(Image.fromarray(GRAY.astype(np.float32)), "TIFF"),
        "image/tiff",
        200,
        None,
    ),
    ("wrong content type", jpeg_bytes(RGB), "text/plain", 415, "unsupported_media_type"),
    ("no content type", jpeg_bytes(RGB), "", 415, "unsupported_media_type"),
    ("upload over the limit", b"\xff" * (1024 * 1024 + 10), "image/jpeg", 413, "payload_too_large"),
]


@pytest.mark.parametrize("name,body,ctype,status,code", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_raw_uploads(client, name, body, ctype, status, code):
    r = client.post("/predict?detect=false", data=body, content_type=ctype or None)
    if status is None:  # either refused cleanly or decoded: never a 5xx
        assert r.status_code in (200, 400, 413), r.json
        return
    assert r.status_code == status, r.json
    if code:
        assert r.json["error"]["code"] == code and r.json["error"]["message"]
        assert r.json["request_id"] == r.headers["X-Request-ID"]
    else:
        assert len(r.json["faces"]) == 1


def test_animated_gif_uses_first_frame(client):
    frames = [Image.fromarray(np.full((48, 48), v, np.uint8)) for v in (10, 250)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r = client.post("/predict?detect=false", data=buf.getvalue(), content_type="image/gif")
    assert r.status_code == 200 and r.json["faces"][0]["emotion"] == "angry"  # dark frame


def test_exif_rotation_is_applied(client):
    im = Image.fromarray(np.zeros((100, 200, 3), np.uint8))  # 200 wide, 100 high
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    r = client.post(
        "/predict?detect=false",
        data=_encode(im, "JPEG", exif=exif.tobytes()),
        content_type="image/jpeg",
    )
    assert (r.json["width"], r.json["height"]) == (100, 200)


FORM_CASES = [
    ("wrong field name", {"file": (io.BytesIO(jpeg_bytes(RGB)), "a.jpg")}, 400, "bad_request"),
    (
        "two files",
        {"image": [(io.BytesIO(jpeg_bytes(RGB)), "a.jpg"), (io.BytesIO(jpeg_bytes(RGB)), "b.jpg")]},
        400,
        "bad_request",
    ),
    ("zero-size file", {"image": (io.BytesIO(b""), "a.jpg")}, 400, "bad_image"),
    (
        "unknown option",
        {"image": (io.BytesIO(jpeg_bytes(RGB)), "a.jpg"), "colour": "1"},
        422,
        "invalid_options",
    ),
    (
        "out-of-range option",
        {"image": (io.BytesIO(jpeg_bytes(RGB)), "a.jpg"), "top_k": "0"},
        422,
        "invalid_options",
    ),
    (
        "non-numeric option",
        {"image": (io.BytesIO(jpeg_bytes(RGB)), "a.jpg"), "max_faces": "many"},
        422,
        "invalid_options",
    ),
    (
        "non-UTF-8 form field",
        {"image": (io.BytesIO(jpeg_bytes(RGB)), "a.jpg"), "detect": b"\xff\xfe".decode("latin-1")},
        422,
        "invalid_options",
    ),
]


@pytest.mark.parametrize("name,data,status,code", FORM_CASES, ids=[c[0] for c in FORM_CASES])
def test_multipart_errors(client, name, data, status, code):
    r = client.post("/predict", data=data)
    assert r.status_code == status, r.json
    assert r.json["error"]["code"] == code
    if status == 422:
        assert r.json["error"]["fields"]


JSON_CASES = [
    ("malformed base64", {"image": "not base64!!"}, 400, "bad_image"),
    ("image not a string", {"image": 12}, 400, "bad_image"),
    ("no image key", {"picture": "abc"}, 400, "bad_request"),
    (
        "option of wrong type",
        {"image": base64.b64encode(jpeg_bytes(RGB)).decode(), "detect": "maybe"},
        422,
        "invalid_options",
    ),
    ("JSON array", [1, 2], 400, "bad_request"),
]


@pytest.mark.parametrize("name,body,status,code", JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_json_errors(client, name, body, status, code):
    r = client.post("/predict", json=body)
    assert r.status_code == status and r.json["error"]["code"] == code


def test_invalid_json_syntax(client):
    r = client.post("/predict", data=b"{not json", content_type="application/json")
    assert r.status_code == 400 and r.json["error"]["code"] == "bad_request"


def test_repeated_query_option(client):
    r = client.post("/predict?top_k=1&top_k=2", data=jpeg_bytes(RGB), content_type="image/jpeg")
    assert r.status_code == 400 and r.json["error"]["fields"] == {"top_k": ["repeated"]}
