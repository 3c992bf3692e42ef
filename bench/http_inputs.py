"""Generators (hypothesis strategies) of what clients may send: images of every size up to
the pixel limit in every mode and format the service accepts, option values of every
JSON type, JSON documents of any depth, numbers of any length, strings with any code
points, hand-made multipart bodies and content types.

tests/service/test_properties.py checks the service's answer to each; bench/soak_mixed.py
draws a pool of bad requests from them to mix into load.
"""

from __future__ import annotations

import io
import json
import string

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from bench.images import astronaut
from service.api.schemas import predict_options

OPTION_NAMES = sorted(predict_options.fields)


def encoded(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def png(w: int, h: int, value: int = 128) -> bytes:
    """A flat gray PNG (a few hundred bytes even at millions of pixels)."""
    return encoded(Image.new("RGB", (w, h), (value,) * 3), "PNG")


GOOD = png(64, 64)  # a valid image with no face: classified whole, as a crop


# Modes each format can store, as Pillow writes them.
FORMAT_MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "WEBP": ["RGB", "RGBA"],
}
MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "GIF": 65535}  # what the encoders can write


FACE = astronaut()[20:220, 160:330]  # her face and some hair


@st.composite
def image_sizes(draw, max_pixels: int) -> tuple[int, int]:
    """Every width and height from 1 up to just over the pixel limit, extreme aspect
    ratios included (one side 1-3 pixels, the other tens of thousands)."""
    side = st.one_of(st.integers(1, 3), st.integers(1, 700), st.integers(1, max_pixels))
    a = draw(side)
    room = max(1, max_pixels // a)
    b = draw(st.one_of(st.integers(1, 3), st.integers(1, min(room, 700)), st.integers(1, room)))
    if draw(st.booleans()) and a * b < max_pixels:
        b = min(b * 2, room + 1)  # sometimes just over the limit
    return (a, b) if draw(st.booleans()) else (b, a)


@st.composite
def images(draw, max_pixels: int) -> tuple[bytes, int, int]:
    """(encoded image, width, height): a format and a mode it can store, a fill, and
    sometimes a face of any size pasted anywhere, partly outside the frame included."""
    w, h = draw(image_sizes(max_pixels))
    fmt = draw(st.sampled_from(sorted(FORMAT_MODES)))
    if fmt in MAX_SIDE:
        w, h = min(w, MAX_SIDE[fmt]), min(h, MAX_SIDE[fmt])
    mode = draw(st.sampled_from(FORMAT_MODES[fmt]))
    fill = draw(st.sampled_from(["flat", "noise", "face"]))
    if fill == "noise" and w * h <= 40_000:
        seed = draw(st.integers(0, 2**16))
        arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        arr = np.full((h, w, 3), draw(st.integers(0, 255)), np.uint8)
    if fill == "face":
        side = draw(st.integers(1, max(1, min(2 * max(w, h), 3000))))
        face = np.asarray(Image.fromarray(FACE).resize((side, side)))
        x, y = draw(st.integers(-side + 1, w - 1)), draw(st.integers(-side + 1, h - 1))
        fx0, fy0 = max(0, -x), max(0, -y)
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(w, x + side), min(h, y + side)
        arr[y0:y1, x0:x1] = face[fy0 : fy0 + y1 - y0, fx0 : fx0 + x1 - x0]
    im = Image.fromarray(arr).convert("I" if mode == "I;16" else mode)
    if mode == "I;16":
        im = im.convert("I;16")
    return encoded(im, fmt), w, h


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-200, 20_000),
    st.integers(),
    st.floats(),  # nan, inf, -0.0, fractions, huge
    st.text(max_size=20),
    st.sampled_from(["true", "false", "True", "1", "3", " 7 ", "+2", "1e2", "0x10", "３"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
option_names = st.one_of(st.sampled_from(OPTION_NAMES), st.text(min_size=1, max_size=12))


json_documents = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@st.composite
def nested(draw) -> bytes:
    depth = draw(st.integers(1, 200_000))
    kind = draw(st.sampled_from(["[]", "{}", "mixed"]))
    if kind == "[]":
        return b"[" * depth + b"]" * depth
    if kind == "{}":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"image":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def json_numbers(draw) -> str:
    """A JSON number of any length: sign, integer digits, fraction, exponent."""
    digits = draw(st.text(string.digits, min_size=1, max_size=draw(st.sampled_from([3, 30, 9000]))))
    digits = digits.lstrip("0") or "0"
    text = draw(st.sampled_from(["", "-"])) + digits
    if draw(st.booleans()):
        text += "." + draw(st.text(string.digits, min_size=1, max_size=40))
    if draw(st.booleans()):
        text += draw(st.sampled_from("eE")) + draw(st.sampled_from(["", "+", "-"]))
        text += draw(st.text(string.digits, min_size=1, max_size=7))
    return text


any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)


BOUNDARY_CHARS = string.ascii_letters + string.digits + "'()+_,-./:=? "


@st.composite
def multipart(draw) -> tuple[bytes, str, int]:
    """A multipart body by hand: any boundary (valid or not), any field and file names,
    0-6 files, good or bad contents, sometimes truncated. Returns (body, content type,
    number of image parts)."""
    boundary = draw(
        st.one_of(
            st.text(BOUNDARY_CHARS, min_size=1, max_size=70).map(str.strip).filter(bool),
            st.text(max_size=90),
        )
    )
    parts, images = [], 0
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.just("image"), st.just("images"), st.text(max_size=12)))
        filename = draw(
            st.one_of(
                st.none(),
                st.just("../../etc/passwd"),
                st.text(max_size=20),
                st.just("a" * 300 + ".png"),
            )
        )
        content = draw(st.sampled_from([GOOD, b"", b"not an image", GOOD[:40]]))
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
            images += name == "image"
        head = f"Content-Disposition: {disp}\r\nContent-Type: image/png\r\n\r\n"
        parts.append(
            f"--{boundary}\r\n".encode("utf-8", "replace")
            + head.encode("utf-8", "replace")
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode("utf-8", "replace")
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    ctype = draw(
        st.sampled_from(
            [
                f'multipart/form-data; boundary="{boundary}"',
                f"multipart/form-data; boundary={boundary}",
                "multipart/form-data",
                f"multipart/mixed; boundary={boundary}",
            ]
        )
    )
    ctype = ctype.replace("\r", "").replace("\n", "")
    return body, ctype.encode("utf-8", "replace").decode("latin-1"), images


content_types = st.one_of(
    st.sampled_from(
        [
            "",
            "image/png",
            "image/jpeg; charset=utf-8",
            "image/*",
            "image",
            "application/json; charset=latin-1",
            "application/json",
            "application/octet-stream",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=",
            "video/mp4",
            ";;;",
            "application/json; charset=" + "x" * 200,
        ]
    ),
    st.from_regex(r"\A[a-z*]{0,12}/[a-z0-9.+*-]{0,20}(; ?[a-z]{1,8}=[^\r\n;]{0,20})?\Z"),
)


@st.composite
def odd_requests(draw, max_pixels: int) -> dict:
    """One request from the generators above, as keyword arguments of
    ``requests.request`` (url relative to the service): mostly ones the service must
    refuse, some it answers. For mixing into load."""
    kind = draw(st.sampled_from(["image", "options", "json", "number", "multipart", "ctype"]))
    if kind == "image":
        data, _, _ = draw(images(max_pixels))
        return {
            "method": "POST",
            "url": "/predict",
            "data": data,
            "headers": {"Content-Type": "image/png"},
        }
    if kind == "options":
        params = draw(st.lists(st.tuples(option_names, json_values.map(str)), max_size=4))
        return {
            "method": "POST",
            "url": "/predict",
            "params": params,
            "data": GOOD,
            "headers": {"Content-Type": "image/png"},
        }
    if kind == "json":
        doc = draw(st.one_of(json_documents.map(lambda d: json.dumps(d).encode()), nested()))
        return {
            "method": "POST",
            "url": "/predict",
            "data": doc,
            "headers": {"Content-Type": "application/json"},
        }
    if kind == "number":
        doc = '{"image": "aGk=", "top_k": ' + draw(json_numbers()) + "}"
        return {
            "method": "POST",
            "url": "/predict",
            "data": doc.encode(),
            "headers": {"Content-Type": "application/json"},
        }
    if kind == "multipart":
        body, ctype, _ = draw(multipart())
        url = draw(st.sampled_from(["/predict", "/predict/batch"]))
        return {"method": "POST", "url": url, "data": body, "headers": {"Content-Type": ctype}}
    data = draw(st.sampled_from([GOOD, b"", b"{}", b"\x00" * 10]))
    ctype = draw(content_types).encode("utf-8", "replace").decode("latin-1")  # as on the wire
    return {"method": "POST", "url": "/predict", "data": data, "headers": {"Content-Type": ctype}}
