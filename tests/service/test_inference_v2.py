"""The Open Inference Protocol (v2) with a fake model and detector: every endpoint, both
models, JSON and Triton's binary tensor data (built and parsed by tritonclient itself), and
every kind of bad request answered 4xx in the protocol's error shape."""

from __future__ import annotations

import gzip
import io
import json
import struct
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image

from service.app import create_app
from service.model.registry import ModelSlot
from tests.conftest import jpeg_bytes
from tests.service.conftest import CheckedClient, FakeModel
from tests.service.test_reload import FolderModel, add_version

HEADER = "Inference-Header-Content-Length"
FACES_URL, PIPELINE_URL = "/v2/models/fake/infer", "/v2/models/fake-pipeline/infer"


def crops(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 3), dtype=np.uint8)


def photo(value: int = 128) -> bytes:
    return jpeg_bytes(np.full((160, 240, 3), value, np.uint8))


def faces_input(x: np.ndarray, binary: bool = True) -> triton.InferInput:
    t = triton.InferInput("faces", list(x.shape), "UINT8")
    return t.set_data_from_numpy(x, binary_data=binary)


def images_input(images: list[bytes]) -> triton.InferInput:
    t = triton.InferInput("image", [len(images)], "BYTES")
    return t.set_data_from_numpy(np.array(images, dtype=object))


def send(client, url: str, inputs, outputs=None, **kw):
    """POST what tritonclient's InferenceServerClient.infer would send."""
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs, **kw)
    headers = {} if json_size is None else {HEADER: str(json_size)}
    return client.post(url, data=body, headers=headers)


def result(resp) -> triton.InferResult:
    """Parse the response as tritonclient does."""
    assert resp.status_code == 200, resp.data[:300]
    length = resp.headers.get(HEADER)
    return triton.InferenceServerClient.parse_response_body(
        resp.data, header_length=None if length is None else int(length)
    )


def assert_error(resp, status: int, fragment: str = "") -> str:
    """A protocol error: the status, ``{"error": message}`` and nothing else."""
    assert resp.status_code == status, (resp.status_code, resp.data[:300])
    body = resp.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert fragment in body["error"], body["error"]
    assert resp.headers["X-Request-ID"]
    return body["error"]


def test_health_and_server_metadata(client):
    meta = client.get("/v2")
    assert meta.status_code == 200 and meta.json["name"] == "fer-service"
    assert {"binary_tensor_data", "classification"} <= set(meta.json["extensions"])
    assert client.get("/v2/health/live").json == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json == {"ready": True}
    assert ready.headers["X-Request-ID"]


def test_model_metadata_names_both_models_with_shapes_and_labels(client, model):
    faces = client.get("/v2/models/fake").json
    assert faces["versions"] == ["7"]
    assert faces["inputs"] == [{"name": "faces", "datatype": "UINT8", "shape": [-1, 48, 48, 3]}]
    assert faces["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 7]}]
    assert faces["parameters"]["labels"] == model.labels
    pipe = client.get("/v2/models/fake-pipeline/versions/7").json
    assert pipe["name"] == "fake-pipeline"
    assert pipe["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in pipe["outputs"]] == [
        "image_index",
        "boxes",
        "scores",
        "emotions",
        "probabilities",
    ]
    for path in ("/v2/models/fake/ready", "/v2/models/fake-pipeline/versions/7/ready"):
        r = client.get(path)
        assert r.status_code == 200 and r.json["ready"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/fake/versions/8",
        "/v2/models/fake/versions/x/ready",
        "/v2/models/fake-pipeline/versions/70",
    ],
)
def test_unknown_model_or_version_is_404(client, path):
    assert_error(client.get(path), 404, "is not found")


def test_unknown_model_or_version_infer_is_404_before_reading_the_body(client):
    assert_error(client.post("/v2/models/nope/infer", data=b"junk"), 404, "'nope'")
    assert_error(client.post("/v2/models/fake/versions/9/infer", data=b"junk"), 404, "version 9")


def test_a_version_in_the_folder_that_is_not_served_is_unavailable(tmp_path, settings, detector):
    add_version(tmp_path, 1)
    add_version(tmp_path, 3)
    slot = ModelSlot(tmp_path, FolderModel)
    assert slot.check()
    app = create_app(settings, models=slot, detector=detector)
    app.test_client_class = CheckedClient
    c = app.test_client()
    assert c.get("/v2/models/fake").json["versions"] == ["3"]
    assert c.get("/v2/models/fake/versions/3/ready").status_code == 200
    r = c.get("/v2/models/fake/versions/1/ready")
    assert r.status_code == 400 and r.json == {"name": "fake", "ready": False}
    assert_error(c.get("/v2/models/fake/versions/1"), 503, "'fake' version 1 is not at ready")
    r = send(c, "/v2/models/fake/versions/1/infer", [faces_input(crops(1))])
    assert_error(r, 503, "not at ready state")
    assert "Retry-After" not in r.headers  # it will not become ready by waiting
    assert_error(c.get("/v2/models/fake/versions/2"), 404)
    out = result(send(c, "/v2/models/fake/versions/3/infer", [faces_input(crops(1))]))
    assert out.get_response()["model_version"] == "3"


def test_before_the_model_is_ready(settings, detector):
    app = create_app(settings, model=FakeModel(ready=False), detector=detector)
    app.test_client_class = CheckedClient
    c = app.test_client()
    assert c.get("/v2/health/live").status_code == 200
    r = c.get("/v2/health/ready")
    assert r.status_code == 400 and r.json == {"ready": False}
    assert c.get("/v2/models/fake/ready").status_code == 400
    r = send(c, FACES_URL, [faces_input(crops(1))])
    assert_error(r, 503, "loading")
    assert r.headers["Retry-After"]


def test_faces_as_json_get_the_models_probabilities(client, model):
    x = np.full((2, 48, 48, 3), 200, np.uint8)
    x[1] = 20
    body = {
        "id": "req-1",
        "inputs": [
            {"name": "faces", "shape": [2, 48, 48, 3], "datatype": "UINT8", "data": x.tolist()}
        ],
    }
    r = client.post(FACES_URL, json=body)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    out = r.json
    assert (out["model_name"], out["model_version"], out["id"]) == ("fake", "7", "req-1")
    (probs,) = out["outputs"]
    assert probs["name"] == "probabilities" and probs["shape"] == [2, 7]
    p = np.array(probs["data"], np.float32).reshape(2, 7)
    np.testing.assert_allclose(p, model.predict(x))  # bright face 'sad', dark 'angry'
    assert p[0].argmax() == 5 and p[1].argmax() == 0


def test_a_crop_reaches_the_model_as_the_same_crop_uploaded_to_predict(client, model):
    # The service's own path for a pre-cropped face: /predict with detect=false.
    x = crops(1, seed=3)
    png = io.BytesIO()
    Image.fromarray(x[0]).save(png, "PNG")
    r = client.post("/predict?detect=false", data=png.getvalue(), content_type="image/png")
    assert r.status_code == 200
    via_predict = model.batches[-1]
    out = result(send(client, FACES_URL, [faces_input(x)]))
    via_v2 = model.batches[-1]
    assert via_v2.dtype == np.uint8 and via_v2.shape == (1, 48, 48, 3)
    np.testing.assert_array_equal(via_v2, via_predict)  # gray, three equal channels
    assert (via_v2[..., 0] == via_v2[..., 2]).all()
    probs = out.as_numpy("probabilities")
    face = r.json["faces"][0]
    np.testing.assert_allclose(probs[0], list(face["probabilities"].values()), atol=1e-4)


def test_tritonclient_defaults_binary_in_and_out(client, model):
    x = crops(3)
    r = send(client, FACES_URL, [faces_input(x)])  # binary input, binary_data_output
    assert r.headers["Content-Type"] == "application/octet-stream"
    out = result(r)
    assert out.get_output("probabilities")["parameters"]["binary_data_size"] == 3 * 7 * 4
    probs = out.as_numpy("probabilities")
    assert probs.dtype == np.float32 and probs.shape == (3, 7)
    np.testing.assert_array_equal(model.batches[-1][..., 0], _gray(x))


def _gray(x: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(c).convert("L")) for c in x])


def test_outputs_json_or_binary_each_and_classification(client):
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=False, class_count=2),
    ]
    x = np.full((1, 48, 48, 3), 250, np.uint8)
    r = send(client, FACES_URL, [faces_input(x)], outputs)
    assert r.headers["Content-Type"] == "application/json" and HEADER not in r.headers
    (top,) = r.json["outputs"]
    assert (top["datatype"], top["shape"]) == ("BYTES", [1, 2])
    assert top["data"][0] == "0.700000:6:surprise"  # Triton's "score:index:label"
    assert top["data"][1].startswith("0.050000:")
    outputs = [
        triton.InferRequestedOutput("emotions", binary_data=False),
        triton.InferRequestedOutput("boxes", binary_data=True),
        triton.InferRequestedOutput("probabilities", class_count=1),  # binary by default
    ]
    r = send(client, PIPELINE_URL, [images_input([photo()])], outputs)
    out = result(r)
    assert [o["name"] for o in out.get_response()["outputs"]] == [
        "emotions",
        "boxes",
        "probabilities",
    ]
    assert "data" in out.get_output("emotions") and "data" not in out.get_output("boxes")
    assert out.as_numpy("boxes").tolist() == [[100, 20, 80, 90], [10, 10, 40, 40]]
    best = [v.decode().split(":")[2] for v in out.as_numpy("probabilities")[:, 0]]
    assert best == list(out.as_numpy("emotions"))


def test_pipeline_finds_every_face_of_every_image(client):
    images = [photo(40), photo(220)]
    out = result(send(client, PIPELINE_URL, [images_input(images)]))
    index = out.as_numpy("image_index")
    boxes = out.as_numpy("boxes")
    assert index.tolist() == [0, 0, 1, 1]
    assert boxes.tolist() == [[100, 20, 80, 90], [10, 10, 40, 40]] * 2  # largest first
    np.testing.assert_allclose(out.as_numpy("scores"), [0.95, 0.9, 0.95, 0.9])
    emotions = [e.decode() for e in out.as_numpy("emotions")]
    probs = out.as_numpy("probabilities")
    assert probs.shape == (4, 7) and emotions[0] != emotions[2]
    # The same as /predict says of each image.
    for i, img in enumerate(images):
        faces = client.post("/predict", data=img, content_type="image/jpeg").json["faces"]
        assert [f["emotion"] for f in faces] == emotions[2 * i : 2 * i + 2]
        np.testing.assert_allclose(
            probs[2 * i], list(faces[0]["probabilities"].values()), atol=1e-6
        )


def test_pipeline_json_with_base64_and_options(client):
    import base64

    body = {
        "parameters": {"detect": False},
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"content_type": "base64"},
                "data": [base64.b64encode(photo()).decode()],
            }
        ],
        "outputs": [{"name": "boxes"}, {"name": "scores"}, {"name": "emotions"}],
    }
    out = client.post(PIPELINE_URL, json=body).json
    got = {o["name"]: o for o in out["outputs"]}
    assert list(got) == ["boxes", "scores", "emotions"]
    assert got["boxes"]["data"] == [0, 0, 240, 160] and got["boxes"]["shape"] == [1, 4]
    assert got["scores"]["data"] == [-1.0]  # the whole image was classified
    body["parameters"] = {"max_faces": 1, "binary_data_output": True}
    out = result(client.post(PIPELINE_URL, json=body))
    assert out.as_numpy("boxes").tolist() == [[100, 20, 80, 90]]


def test_an_image_without_faces_gives_empty_outputs(client, detector):
    detector.faces = []
    out = result(
        send(client, PIPELINE_URL, [images_input([jpeg_bytes(np.zeros((400, 600, 3), np.uint8))])])
    )
    assert out.as_numpy("boxes").shape == (0, 4)
    assert out.as_numpy("probabilities").shape == (0, 7)
    assert out.as_numpy("emotions").shape == (0,)


def test_gzip_and_deflate_request_bodies(client):
    for encoding, compress in (("gzip", gzip.compress), ("deflate", __import__("zlib").compress)):
        body, size = triton.InferenceServerClient.generate_request_body([faces_input(crops(1))])
        r = client.post(
            FACES_URL,
            data=compress(body),
            headers={HEADER: str(size), "Content-Encoding": encoding},
        )
        assert result(r).as_numpy("probabilities").shape == (1, 7)


def _json_body(**tensor) -> bytes:
    t = {"name": "faces", "shape": [1, 48, 48, 3], "datatype": "UINT8", "data": [0] * 6912}
    t.update(tensor)
    return json.dumps({"inputs": [t]}).encode()


def _binary(head: dict, data: bytes, length: int | None = None) -> tuple[bytes, dict]:
    js = json.dumps(head).encode()
    return js + data, {HEADER: str(len(js) if length is None else length)}


ONE_FACE = {"name": "faces", "shape": [1, 48, 48, 3], "datatype": "UINT8"}
RAW = bytes(6912)


def _bin_faces(size: int = 6912, data: bytes = RAW, **extra):
    return _binary(
        {"inputs": [{**ONE_FACE, "parameters": {"binary_data_size": size}}], **extra}, data
    )


BAD = [
    (
        "an integer too large for FP32",
        FACES_URL,
        _json_body(datatype="FP32", shape=[1], data=[10**400]),
        {},
        "not FP32",
    ),
    (
        "JSON nested too deep",
        FACES_URL,
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        {},
        "not valid JSON",
    ),
    ("not JSON", FACES_URL, b"{nope", {}, "not valid JSON"),
    ("JSON array", FACES_URL, b"[1, 2]", {}, "JSON object"),
    ("no inputs", FACES_URL, b'{"inputs": []}', {}, "non-empty list"),
    ("input not an object", FACES_URL, b'{"inputs": [3]}', {}, "string 'name'"),
    (
        "unknown input",
        FACES_URL,
        _json_body(name="pixels"),
        {},
        "unexpected inference input 'pixels'",
    ),
    ("missing input", PIPELINE_URL, _json_body(), {}, "unexpected inference input 'faces'"),
    ("wrong datatype", FACES_URL, _json_body(datatype="FP32"), {}, "expects 'UINT8'"),
    ("unknown datatype", FACES_URL, _json_body(datatype="BF16"), {}, "datatype 'BF16'"),
    (
        "wrong rank",
        FACES_URL,
        _json_body(shape=[48, 48, 3], data=[0] * 6912),
        {},
        "expected [-1, 48, 48, 3]",
    ),
    (
        "wrong size",
        FACES_URL,
        _json_body(shape=[1, 32, 32, 3], data=[0] * 3072),
        {},
        "got [1, 32, 32, 3]",
    ),
    ("negative shape", FACES_URL, _json_body(shape=[-1, 48, 48, 3]), {}, "non-negative integers"),
    (
        "too few elements",
        FACES_URL,
        _json_body(data=[0] * 100),
        {},
        "needs 6912 elements, 'data' has 100",
    ),
    ("out of range", FACES_URL, _json_body(data=[256] * 6912), {}, "not UINT8"),
    ("floats for UINT8", FACES_URL, _json_body(data=[0.5] * 6912), {}, "not UINT8"),
    ("booleans for UINT8", FACES_URL, _json_body(data=[True] * 6912), {}, "not UINT8"),
    ("data not a list", FACES_URL, _json_body(data="abc"), {}, "must be a list"),
    ("no data", FACES_URL, json.dumps({"inputs": [ONE_FACE]}).encode(), {}, "neither 'data'"),
    (
        "shared memory",
        FACES_URL,
        _json_body(parameters={"shared_memory_region": "r"}),
        {},
        "shared memory",
    ),
    (
        "strings for BYTES",
        PIPELINE_URL,
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [7]}]}
        ).encode(),
        {},
        "must be strings",
    ),
    (
        "bad base64",
        PIPELINE_URL,
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"content_type": "base64"},
                        "data": ["%%%"],
                    }
                ]
            }
        ).encode(),
        {},
        "not valid base64",
    ),
    (
        "not an image",
        PIPELINE_URL,
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}
        ).encode(),
        {},
        "image",
    ),
    (
        "no images",
        PIPELINE_URL,
        json.dumps(
            {"inputs": [{"name": "image", "shape": [0], "datatype": "BYTES", "data": []}]}
        ).encode(),
        {},
        "send 1 to 16 images",
    ),
    (
        "image matrix",
        PIPELINE_URL,
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}
        ).encode(),
        {},
        "expected [-1]",
    ),
    (
        "bad pipeline parameter",
        PIPELINE_URL,
        json.dumps(
            {
                "parameters": {"max_faces": 0},
                "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
            }
        ).encode(),
        {},
        "max_faces",
    ),
    (
        "unknown output",
        FACES_URL,
        json.dumps(
            {"inputs": [{**ONE_FACE, "data": [0] * 6912}], "outputs": [{"name": "logits"}]}
        ).encode(),
        {},
        "unexpected inference output 'logits'",
    ),
    (
        "classification of boxes",
        PIPELINE_URL,
        json.dumps(
            {
                "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
                "outputs": [{"name": "boxes", "parameters": {"classification": 2}}],
            }
        ).encode(),
        {},
        "classification is for",
    ),
    (
        "binary_data not a boolean",
        FACES_URL,
        json.dumps(
            {
                "inputs": [{**ONE_FACE, "data": [0] * 6912}],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": "yes"}}],
            }
        ).encode(),
        {},
        "true or false",
    ),
    (
        "id not a string",
        FACES_URL,
        json.dumps({"id": 5, "inputs": [{**ONE_FACE, "data": [0] * 6912}]}).encode(),
        {},
        "'id' must be a string",
    ),
    (
        "header length not a number",
        FACES_URL,
        _bin_faces()[0],
        {HEADER: "ten"},
        "non-negative integer",
    ),
    ("header length past the body", FACES_URL, _bin_faces()[0], {HEADER: "999999"}, "has only"),
    ("header length cuts the JSON", FACES_URL, _bin_faces()[0], {HEADER: "20"}, "not valid JSON"),
    (
        "binary size too small for the shape",
        FACES_URL,
        *_bin_faces(size=100, data=bytes(100)),
        "needs 6912 bytes",
    ),
    ("binary size past the data", FACES_URL, *_bin_faces(data=bytes(10)), "only 10 bytes"),
    ("bytes left over", FACES_URL, *_bin_faces(data=RAW + b"xx"), "2 bytes of binary data"),
    ("binary data without the header", FACES_URL, _bin_faces()[0], {}, "not valid JSON"),
    (
        "both data and binary",
        FACES_URL,
        *_binary(
            {"inputs": [{**ONE_FACE, "data": [0], "parameters": {"binary_data_size": 6912}}]}, RAW
        ),
        "both 'data'",
    ),
    (
        "cut BYTES length",
        PIPELINE_URL,
        *_binary(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 3},
                    }
                ]
            },
            b"\x05\x00\x00",
        ),
        "cut short",
    ),
    (
        "BYTES longer than the data",
        PIPELINE_URL,
        *_binary(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            struct.pack("<I", 50) + b"ab",
        ),
        "longer than the data",
    ),
    (
        "fewer BYTES than the shape",
        PIPELINE_URL,
        *_binary(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [2],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            struct.pack("<I", 2) + b"ab",
        ),
        "holds 1",
    ),
    (  # found in review: dimensions beyond what any model has cost seconds of CPU, or 500s
        "too many dimensions",
        FACES_URL,
        _json_body(shape=[1] * 70, data=[0]),
        {},
        "70 dimensions",
    ),
    (
        "a dimension beyond any size",
        FACES_URL,
        _json_body(shape=[0, 2**70], data=[]),
        {},
        "more than 2147483647 elements",
    ),
    (
        "too many dimensions, binary",
        FACES_URL,
        *_binary(
            {"inputs": [{**ONE_FACE, "shape": [1] * 70, "parameters": {"binary_data_size": 1}}]},
            b"\x00",
        ),
        "70 dimensions",
    ),
    (
        "a header length in non-ASCII digits",
        FACES_URL,
        _bin_faces()[0],
        {HEADER: "\u00b2"},
        "non-negative integer",
    ),
    (
        "broken gzip",
        FACES_URL,
        b"\x1f\x8b junk",
        {"Content-Encoding": "gzip"},
        "could not be decompressed",
    ),
]


@pytest.mark.parametrize("name,url,body,headers,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_400_in_the_protocol_shape(client, name, url, body, headers, fragment):
    r = client.post(url, data=body, headers=headers)
    assert_error(r, 400, fragment)


def test_duplicate_inputs_and_limits(client):
    t = {**ONE_FACE, "data": [0] * 6912}
    r = client.post(FACES_URL, data=json.dumps({"inputs": [t, t]}))
    assert_error(r, 400, "given twice")
    too_many = np.zeros((65, 48, 48, 3), np.uint8)
    assert_error(send(client, FACES_URL, [faces_input(too_many)]), 400, "the limit is 64")
    images = [b"x"] * 17
    assert_error(send(client, PIPELINE_URL, [images_input(images)]), 400, "not 17")


def test_other_4xx_take_the_protocol_shape(client):
    big = send(client, FACES_URL, [faces_input(np.zeros((30, 48, 48, 3), np.uint8) + 1)])
    assert big.status_code == 200  # 30 faces: 207 KB
    huge = np.zeros((160, 48, 48, 3), np.uint8)  # 1.1 MB: over the fixture's 1 MB limit
    assert_error(send(client, FACES_URL, [faces_input(huge)]), 413)
    bomb = gzip.compress(b"{" + b" " * (2 * 1024 * 1024) + b"}")
    r = client.post(FACES_URL, data=bomb, headers={"Content-Encoding": "gzip"})
    assert_error(r, 413, "decompressed body")
    r = client.post(FACES_URL, data=b"{}", headers={"Content-Encoding": "br"})
    assert_error(r, 415, "'br'")
    client.unchecked = True  # a method the spec rightly does not list
    r = client.get(FACES_URL)
    assert_error(r, 405)
    assert "POST" in r.headers["Allow"]


def test_api_key_guards_infer_only(settings, model, detector):
    app = create_app(replace(settings, api_key="s3cret"), model=model, detector=detector)
    app.test_client_class = CheckedClient
    c = app.test_client()
    assert_error(send(c, FACES_URL, [faces_input(crops(1))]), 401, "X-API-Key")
    body, size = triton.InferenceServerClient.generate_request_body([faces_input(crops(1))])
    r = c.post(FACES_URL, data=body, headers={HEADER: str(size), "X-API-Key": "s3cret"})
    assert result(r).as_numpy("probabilities").shape == (1, 7)
    for path in ("/v2", "/v2/health/ready", "/v2/models/fake", "/v2/models/fake/ready"):
        assert c.get(path).status_code == 200


def test_request_ids_logs_and_metrics(client, caplog):
    caplog.set_level("INFO", logger="service.access")
    before = client.get("/metrics").data.decode()
    body, size = triton.InferenceServerClient.generate_request_body([faces_input(crops(1))])
    r = client.post(FACES_URL, data=body, headers={HEADER: str(size), "X-Request-ID": "abc-1"})
    assert r.headers["X-Request-ID"] == "abc-1"
    assert result(r).get_response()["id"] == "abc-1"  # no id in the body: the request's
    body, size = triton.InferenceServerClient.generate_request_body(
        [faces_input(crops(1))], request_id="mine"
    )
    r = client.post(FACES_URL, data=body, headers={HEADER: str(size), "X-Request-ID": "abc-2"})
    assert result(r).get_response()["id"] == "mine"
    line = [rec for rec in caplog.records if getattr(rec, "request_id", "") == "abc-2"][-1]
    assert (line.model, line.version, line.infer_id, line.status) == ("fake", "7", "mine", 200)
    assert_error(client.post(FACES_URL, data=b"{"), 400)
    assert_error(client.get("/v2/models/nope"), 404)
    after = client.get("/metrics").data.decode()

    def grew(name: str) -> float:
        return _metric(after, name) - _metric(before, name)

    ok = 'fer_http_requests_total{endpoint="/v2/models/<name>/infer",method="POST",status="200"}'
    assert grew(ok) == 2
    assert grew('fer_errors_total{code="bad_request"}') == 1
    assert grew('fer_errors_total{code="model_not_found"}') == 1
    assert grew('fer_stage_duration_seconds_count{stage="classify"}') == 2
    assert grew("fer_predictions_total") == 2


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_many_huge_dimensions_in_a_small_gzipped_body_are_refused_at_once(client):
    # 40,000 dimensions of 2**62 in 2 KB: math.prod held the GIL for seconds (review).
    doc = _json_body(shape=[2**62] * 40_000 + [0], data=[])
    r = client.post(FACES_URL, data=gzip.compress(doc), headers={"Content-Encoding": "gzip"})
    assert_error(r, 400, "40001 dimensions")


class ExactModel(FakeModel):
    """Probabilities with more digits than the JSON answers' 4 decimals."""

    def predict(self, faces):
        p = np.full((len(faces), 7), 0.1234567, np.float32)
        p[:, 3] = 1 - 6 * 0.1234567
        return p


def test_pipeline_probabilities_are_the_models_unrounded(settings, detector):
    app = create_app(settings, model=ExactModel(), detector=detector)
    app.test_client_class = CheckedClient
    out = result(send(app.test_client(), PIPELINE_URL, [images_input([photo(90)])]))
    np.testing.assert_array_equal(out.as_numpy("probabilities")[0], ExactModel().predict([0])[0])
