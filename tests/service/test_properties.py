"""Property-based tests of the whole HTTP surface: whatever a client sends, the answer is a
2xx or a documented 4xx in the JSON error shape, its message says what is wrong, and the
service answers the next request.

The inputs are generated (hypothesis), not enumerated: images of every size up to the
pixel limit in every mode and format we accept, with and without faces; every option in
every place it can be given with values of every JSON type; JSON bodies of any depth and
numbers of any length; multipart bodies with odd boundaries, names and counts; every
content type; batches mixing good and bad parts. The ``@example`` lines are findings,
kept as regressions. The same property over a real gunicorn: tests/test_http_surface.py.
"""

from __future__ import annotations

import base64
import io
import json
import math
from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st
from PIL import Image
from werkzeug.datastructures import MultiDict

from bench.http_inputs import (
    GOOD,
    any_text,
    content_types,
    encoded,
    images,
    json_documents,
    json_numbers,
    json_values,
    multipart,
    nested,
    option_names,
    png,
)
from service.api.schemas import MAX_FACES_LIMIT
from service.app import create_app
from service.config import Settings
from service.detection import Face, make_detector
from tests.conftest import YUNET
from tests.service.conftest import EXAMPLES, CheckedClient, FakeDetector, FakeModel

MAX_PIXELS = 4_000_000
MAX_UPLOAD = 1_000_000  # bytes; Settings take MB
MAX_BATCH = 4


def _detector():
    # The real YuNet where the model file is there: the detector's own arithmetic on odd
    # shapes is part of what is tested (an infinite box once reached int()).
    if YUNET.is_file():
        return make_detector("yunet", str(YUNET), 0, 640)
    return FakeDetector([Face(1, 1, 20, 20, 0.9)])


@pytest.fixture(scope="module")
def client() -> CheckedClient:
    settings_ = Settings.from_env(
        {},
        json_logs=True,  # the JSON log formatter sees every odd value too
        max_upload_mb=MAX_UPLOAD / 1024 / 1024,
        max_pixels=MAX_PIXELS,
        max_batch_images=MAX_BATCH,
    )
    app = create_app(settings_, model=FakeModel(), detector=_detector())
    app.test_client_class = CheckedClient
    return app.test_client()


def assert_answer(client, resp, allowed: set[int]) -> dict | None:
    """The property: a status from ``allowed`` (never a 5xx); an error is the one JSON
    shape with a specific message; the service then still answers."""
    assert resp.status_code < 500, resp.get_data(as_text=True)[:500]
    assert resp.status_code in allowed, (resp.status_code, resp.get_data(as_text=True)[:500])
    body = resp.get_json(silent=True)
    if resp.status_code >= 400:
        assert body and set(body) == {"error", "request_id"}, resp.get_data(as_text=True)[:500]
        err = body["error"]
        assert err["code"] and err["code"] != "internal_error"
        assert err.get("fields") or len(err["message"]) > 12, err  # says what is wrong
    health = client.get("/health")
    assert health.status_code == 200
    return body


# ---------------------------------------------------------------- images


@given(img=images(MAX_PIXELS), how=st.sampled_from(["raw", "multipart", "json"]))
@example(img=(png(40000, 1), 40000, 1), how="raw")  # issue 17: an infinite box, then 500
@example(img=(png(1, 40000), 1, 40000), how="raw")
@example(img=(png(4_000_000, 1), 4_000_000, 1), how="multipart")
@example(img=(png(2001, 2000), 2001, 2000), how="raw")  # just over the pixel limit
@EXAMPLES
def test_any_image_gets_an_answer(client, img, how):
    data, w, h = img
    resp = _post_image(client, data, how)
    body = assert_answer(client, resp, {200, 400, 413})
    too_many = w * h > MAX_PIXELS
    too_big = len(data) * (4 / 3 if how == "json" else 1) > MAX_UPLOAD - 2_000
    if too_many and not too_big:
        assert resp.status_code == 413 and body["error"]["code"] == "image_too_large"
    if resp.status_code == 200:
        assert (body["width"], body["height"]) == (w, h)
        for f in body["faces"]:
            b = f["box"]
            assert 0 <= b["x"] < w and 0 <= b["y"] < h, b
            assert b["x"] + b["width"] <= w and b["y"] + b["height"] <= h, b
    elif not too_big and not too_many:
        pytest.fail(f"a good {w}x{h} image was refused: {body}")


def _post_image(client, data: bytes, how: str, query: str = ""):
    url = "/predict" + query
    if how == "multipart":
        return client.post(url, data={"image": (io.BytesIO(data), "x.img")})
    if how == "json":
        return client.post(url, json={"image": base64.b64encode(data).decode()})
    return client.post(url, data=data, content_type="image/png")


# ---------------------------------------------------------------- options

OPTIONS = {  # name: (kind, low, high), as openapi.yaml and service.api.schemas say
    "max_faces": ("int", 1, MAX_FACES_LIMIT),
    "min_face_size": ("int", 0, 10_000),
    "top_k": ("int", 1, 100),
    "detect": ("bool", 0, 0),
    "annotate": ("bool", 0, 0),
}


def _valid(name: str, value) -> bool:
    """The specification of an option value, independent of the service's code."""
    kind, lo, hi = OPTIONS[name]
    if kind == "bool":
        is_number = type(value) in (int, float)  # 1 == True, but a number is not a flag
        return not is_number and value in (True, False, "true", "false", "True", "False")
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        s = value.strip()
        digits = s.lstrip("+-")
        ok = 1 <= len(digits) <= 100 and digits.isascii() and digits.isdigit()
        return ok and len(s) - len(digits) <= 1 and lo <= int(s) <= hi
    if isinstance(value, int):
        return lo <= value <= hi
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer() and lo <= value <= hi
    return False


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@given(
    query=st.lists(st.tuples(option_names, json_values), max_size=4),
    body=st.lists(st.tuples(option_names, json_values), max_size=4),
    place=st.sampled_from(["form", "json"]),
)
@example(query=[], body=[("top_k", 1.5)], place="json")  # was truncated to 1
@example(query=[], body=[("detect", 1)], place="json")  # was taken for true
@example(query=[("top_k", "３")], body=[], place="form")  # fullwidth digit, was 3
@EXAMPLES
def test_any_options_anywhere(client, query, body, place):
    query = [(n, _as_text(v)) for n, v in query]
    if place == "form":
        # Names a browser would send as they are (it escapes quotes and line breaks in
        # a multipart header; the test client does not): odd ones are in the multipart test.
        body = [(n, _as_text(v)) for n, v in body if n != "image" and _plain(n)]
        data = [("image", (io.BytesIO(GOOD), "a.png"))] + body
        resp = client.post("/predict", query_string=query, data=MultiDict(data))
    else:
        fields = {n: v for n, v in body if n != "image"}
        body = list(fields.items())
        payload = {"image": base64.b64encode(GOOD).decode(), **fields}
        resp = client.post("/predict", query_string=query, json=payload)
    note(f"sent {query=} {body=} as {place}")
    repeated = _repeated(query) or (place == "form" and _repeated(body))
    # The test client writes NaN and Infinity, which JSON (RFC 8259) does not have.
    not_json = any(isinstance(v, float) and not math.isfinite(v) for _, v in body)
    sent = [*query, *body]
    bad = {n for n, v in sent if n not in OPTIONS or not _valid(n, v)}
    expected = 400 if repeated or not_json else 422 if bad else 200
    body_json = assert_answer(client, resp, {expected})
    if expected == 422:
        assert set(body_json["error"]["fields"]) == bad
    if expected == 400 and repeated:
        assert set(body_json["error"]["fields"]) <= repeated
    if expected == 400 and not repeated:
        assert "not a JSON value" in body_json["error"]["message"]
    if expected == 200:
        top_k = dict(sent).get("top_k", 3)
        assert all(len(f["top"]) == min(int(float(top_k)), 7) for f in body_json["faces"])


def _plain(name: str) -> bool:
    return name.isprintable() and not set(name) & set('"\\')


def _repeated(pairs) -> set[str]:
    seen, twice = set(), set()
    for n, _ in pairs:
        (twice if n in seen else seen).add(n)
    return twice


# ---------------------------------------------------------------- bodies


@given(
    doc=st.one_of(
        json_documents.map(lambda d: json.dumps(d).encode()),
        nested(),
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
    )
)
@example(doc=b"[" * 100_000 + b"]" * 100_000)  # issue 17: RecursionError, a 500
@example(doc=b'{"image": "aGk=", "top_k": ' + b"9" * 5000 + b"}")  # said "not a JSON object"
@example(doc=b'{"image": "aGk=", "top_k": NaN}')
@example(doc=b"\xff\xfe{}")
@EXAMPLES
def test_any_json_body(client, doc):
    resp = client.post("/predict", data=doc, content_type="application/json")
    body = assert_answer(client, resp, {400, 413, 422})
    if b"9" * 5000 in doc:
        assert body["error"]["fields"] == {"top_k": ["Number too large."]}


def _number_is_valid_top_k(text: str) -> bool:
    # JSON integers are read exactly; numbers with a fraction or an exponent as doubles
    # (an integral double such as 2.0 or 1e1 is an integer).
    if not any(c in text for c in ".eE"):
        return 1 <= Decimal(text) <= 100
    try:
        value = float(Decimal(text))
    except (InvalidOperation, OverflowError):
        return False
    return math.isfinite(value) and value.is_integer() and 1 <= value <= 100


@given(number=json_numbers())
@EXAMPLES
def test_numbers_of_any_length(client, number):
    doc = f'{{"image": "{base64.b64encode(GOOD).decode()}", "top_k": {number}}}'
    resp = client.post("/predict", data=doc, content_type="application/json")
    valid = _number_is_valid_top_k(number)
    body = assert_answer(client, resp, {200} if valid else {422})
    if not valid:
        assert list(body["error"]["fields"]) == ["top_k"]


@given(
    image=any_text,
    name=any_text,
    value=any_text,
    request_id=st.text(st.characters(exclude_characters="\r\n\x00"), max_size=80),
)
@EXAMPLES
def test_strings_with_any_code_points(client, image, name, value, request_id):
    # Lone surrogates included: json.dumps escapes them, json.loads gives them back.
    doc = json.dumps({"image": image, name or "x": value})
    headers = {"X-Request-ID": request_id.encode("utf-8", "replace").decode("latin-1")}
    resp = client.post("/predict", data=doc, content_type="application/json", headers=headers)
    assert_answer(client, resp, {400, 422})


@given(mp=multipart(), path=st.sampled_from(["/predict", "/predict/batch"]))
@EXAMPLES
def test_any_multipart_body(client, mp, path):
    body, ctype, _ = mp
    resp = client.post(path, data=body, headers={"Content-Type": ctype})
    assert_answer(client, resp, {200, 400, 413, 415, 422})  # 422: a text part is an option


@given(ctype=content_types, data=st.sampled_from([GOOD, b"", b"{}", b"image=1", b"\x00" * 10]))
@EXAMPLES
def test_any_content_type(client, ctype, data):
    for path in ("/predict", "/predict/batch"):
        resp = client.post(path, data=data, headers={"Content-Type": ctype})
        assert_answer(client, resp, {200, 400, 413, 415, 422})


# ---------------------------------------------------------------- batch

BAD_PARTS = {
    "empty": (b"", 400, "bad_image"),
    "text": (b"not an image at all", 400, "bad_image"),
    "truncated": (GOOD[:60], 400, "bad_image"),
    "too many pixels": (png(2001, 2000), 413, "image_too_large"),
    "unsupported": (encoded(Image.new("L", (8, 8)), "PCX"), 415, "unsupported_media_type"),
}


@given(
    parts=st.lists(
        st.one_of(st.sampled_from(sorted(BAD_PARTS)), st.integers(8, 300)),
        min_size=1,
        max_size=MAX_BATCH + 2,
    )
)
@EXAMPLES
def test_batch_mixes_good_and_bad_parts(client, parts):
    files = [
        ("image", (io.BytesIO(png(p, p, 90) if isinstance(p, int) else BAD_PARTS[p][0]), f"{i}"))
        for i, p in enumerate(parts)
    ]
    resp = client.post("/predict/batch", data=MultiDict(files))
    if len(parts) > MAX_BATCH:
        assert_answer(client, resp, {400})
        return
    results = assert_answer(client, resp, {200})["results"]
    assert [r["filename"] for r in results] == [str(i) for i in range(len(parts))]
    for p, r in zip(parts, results, strict=True):
        if isinstance(p, int):  # the same answer as /predict gives for that image alone
            alone = client.post("/predict", data=png(p, p, 90), content_type="image/png")
            assert r["ok"] and _drop_timings(r["result"]) == _drop_timings(alone.get_json())
        else:
            _, status, code = BAD_PARTS[p]
            assert not r["ok"] and (r["status"], r["error"]["code"]) == (status, code)


def _drop_timings(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "timings_ms"}


# ---------------------------------------------------------------- any path, any method

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
PATHS = ["/", "/health", "/ready", "/metrics", "/v1/models", "/openapi.yaml", "/predict"]


@given(
    method=st.sampled_from(METHODS),
    path=st.one_of(st.sampled_from(PATHS + ["/predict/batch"]), st.text(max_size=30)),
    query=st.text(max_size=30),
)
@EXAMPLES
def test_any_method_on_any_path(client, method, path, query):
    url = "/" + path.lstrip("/") + ("?" + query if query else "")
    client.unchecked = True  # unknown paths are not in the spec to check against
    try:
        resp = client.open(url, method=method)
    finally:
        client.unchecked = False
    note(f"{method} {url!r}: {resp.status_code} {resp.get_data(as_text=True)[:300]}")
    assert resp.status_code < 500
    if resp.status_code >= 400 and method != "HEAD":
        error = resp.get_json()["error"]
        if url.startswith("/v2/") or url.split("?")[0] == "/v2":  # the Open Inference Protocol's
            assert isinstance(error, str) and error
        else:
            assert error["message"]


# ---------------------------------------------------------------- Open Inference Protocol

V2_DTYPES = ["UINT8", "FP32", "BYTES", "INT64", "BOOL", "FP16", "uint8", ""]
tensor_shapes = st.one_of(
    st.lists(st.integers(0, 4), max_size=5),
    st.lists(st.integers(-3, 2**70), max_size=4),
    st.lists(st.sampled_from([0, 1, 2**31, 2**62, 2**70]), min_size=6, max_size=300),
    json_values,
)


@st.composite
def v2_inputs(draw) -> dict:
    """One input tensor of an inference request: right, nearly right or anything."""
    out = {
        "name": draw(st.one_of(st.sampled_from(["faces", "images", "image", ""]), json_values)),
        "shape": draw(tensor_shapes),
        "datatype": draw(st.one_of(st.sampled_from(V2_DTYPES), json_values)),
    }
    data = st.one_of(
        st.lists(st.integers(-1, 300), max_size=50),
        st.lists(st.lists(st.integers(0, 255), max_size=4), max_size=4),
        st.lists(st.text(max_size=12), max_size=3),
        json_documents,
    )
    if draw(st.booleans()):
        out["data"] = draw(data)
    if draw(st.booleans()):
        out["parameters"] = draw(
            st.one_of(
                st.fixed_dictionaries({"binary_data_size": st.integers(-5, 10**6)}),
                st.dictionaries(st.text(max_size=20), json_values, max_size=3),
                json_values,
            )
        )
    return out


@given(
    name=st.sampled_from(["fake", "fake-pipeline", "emotion", "x"]),
    version=st.sampled_from([None, "7", "1", "0x7", "-1"]),
    inputs=st.one_of(st.lists(v2_inputs(), max_size=3), json_values),
    outputs=st.one_of(st.none(), st.lists(st.dictionaries(st.text(max_size=8), json_values))),
    binary=st.binary(max_size=64),
    header=st.one_of(
        st.none(),
        st.integers(-2, 400).map(str),
        st.text(max_size=6),
        st.text("0123456789\u00b2\u00b9\u0663", min_size=1, max_size=4),  # non-ASCII digits
    ),
)
@EXAMPLES
def test_any_inference_request(client, name, version, inputs, outputs, binary, header):
    doc = {"inputs": inputs} if outputs is None else {"inputs": inputs, "outputs": outputs}
    head = json.dumps(doc).encode()
    headers = {"Content-Type": "application/octet-stream" if header else "application/json"}
    if header is not None:
        headers["Inference-Header-Content-Length"] = header.replace("\n", "").replace("\r", "")
    url = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    resp = client.post(url, data=head + binary if header else head, headers=headers)
    note(f"{url} {head[:300]!r} -> {resp.status_code} {resp.get_data()[:300]!r}")
    assert resp.status_code in {200, 400, 404, 413, 415, 503}
    if resp.status_code >= 400:
        error = resp.get_json()["error"]
        assert isinstance(error, str) and len(error) > 12
    assert client.get("/health").status_code == 200


# ---------------------------------------------------------------- video


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """One short real clip per container, to cut and corrupt."""
    from bench.videos import Mover, blob, blobs

    root = tmp_path_factory.mktemp("clips")
    out = {}
    for ext in (".avi", ".mp4", ".webm", ".mkv", ".mov"):
        path = blobs(root / f"c{ext}", [Mover(blob(200), (10, 20), (200, 20))], seconds=1.0)
        out[ext] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def video_client(clips, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("scratch")
    settings_ = Settings.from_env(
        {}, json_logs=False, video_tmp_dir=str(scratch), video_max_upload_mb=2.0
    )
    app = create_app(settings_, model=FakeModel(), detector=_detector())
    app.test_client_class = CheckedClient
    return app.test_client(), scratch


@st.composite
def mangled(draw, clips: dict[str, bytes]) -> tuple[bytes, str]:
    ext = draw(st.sampled_from(sorted(clips)))
    data = bytearray(clips[ext])
    for _ in range(draw(st.integers(0, 3))):  # bytes overwritten anywhere
        at = draw(st.integers(0, len(data) - 1))
        data[at : at + 8] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere
    return bytes(draw(st.binary(max_size=4)) + data if draw(st.booleans()) else data), ext


@given(
    data=st.data(), how=st.sampled_from(["multipart", "raw"]), fps=st.sampled_from(["", "1", "30"])
)
@settings(parent=EXAMPLES, max_examples=max(10, EXAMPLES.max_examples // 4))
def test_any_video_upload(video_client, clips, data, how, fps):
    client, scratch = video_client
    body, ext = data.draw(mangled(clips))
    url = "/predict/video" + (f"?fps={fps}" if fps else "")
    if how == "multipart":
        resp = client.post(url, data={"video": (io.BytesIO(body), f"clip{ext}")})
    else:
        resp = client.post(url, data=body, content_type="video/mp4")
    note(f"{ext} {len(body)} bytes {how}: {resp.status_code} {resp.get_data()[:300]!r}")
    event(f"status {resp.status_code}")
    assert_answer(client, resp, {200, 400, 413, 415, 422})
    assert not [p for p in scratch.rglob("*") if p.is_file()], "a temporary file was left"
