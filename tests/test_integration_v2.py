"""The Open Inference Protocol (v2) over a real gunicorn with a real exported model, called
the way other apps call Triton: with tritonclient's HTTP client and its defaults."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.conftest import jpeg_bytes
from tests.server import gunicorn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model, yunet_path, tmp_path_factory):
    # The protocol layer is the same on every runtime; one server is enough.
    work = tmp_path_factory.mktemp("srv-v2")
    with gunicorn(tiny_model.parent, yunet_path, work, FER_RUNTIME="openvino") as srv:
        yield srv


@pytest.fixture
def client(server):
    url, _, _ = server
    with triton.InferenceServerClient(url.removeprefix("http://")) as c:
        yield c


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("emotion") and client.is_model_ready("emotion-pipeline", "1")
    assert not client.is_model_ready("emotion", "2")  # not in the folder: 404, not ready
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("emotion")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "faces", "datatype": "UINT8", "shape": [-1, 48, 48, 3]}]
    assert meta["parameters"]["labels"][0] == "angry" and len(meta["parameters"]["labels"]) == 7
    pipe = client.get_model_metadata("emotion-pipeline", "1")
    assert [o["name"] for o in pipe["outputs"]][-1] == "probabilities"


def test_face_crops_match_predict_on_the_same_crops(server, client):
    url, _, _ = server
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(128, 60, (3, 48, 48, 3)), 0, 255).astype(np.uint8)
    x[0] = np.repeat(x[0, :, :, :1], 3, axis=2)  # one gray crop, two in colour
    inp = triton.InferInput("faces", list(x.shape), "UINT8").set_data_from_numpy(x)
    probs = client.infer("emotion", [inp]).as_numpy("probabilities")  # binary both ways
    assert probs.shape == (3, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-4)
    for crop, p in zip(x, probs, strict=True):
        png = io.BytesIO()
        Image.fromarray(crop).save(png, "PNG")
        r = requests.post(
            url + "/predict",
            params={"detect": "false"},
            data=png.getvalue(),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        face = r.json()["faces"][0]
        np.testing.assert_allclose(p, list(face["probabilities"].values()), atol=2e-4)


def test_photo_pipeline_matches_predict(server, client, astronaut):
    url, _, _ = server
    photo = jpeg_bytes(astronaut)
    image = triton.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array([photo, photo], dtype=object))
    out = client.infer("emotion-pipeline", [image], model_version="1")
    assert out.get_response()["model_version"] == "1"
    assert out.as_numpy("image_index").tolist() == [0, 1]
    expected = requests.post(
        url + "/predict", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=30
    ).json()["faces"][0]
    box = expected["box"]
    for i in range(2):
        assert out.as_numpy("boxes")[i].tolist() == [
            box["x"],
            box["y"],
            box["width"],
            box["height"],
        ]
        assert out.as_numpy("emotions")[i].decode() == expected["emotion"]
        assert out.as_numpy("scores")[i] == pytest.approx(expected["detector_score"], abs=1e-6)
        np.testing.assert_allclose(
            out.as_numpy("probabilities")[i], list(expected["probabilities"].values()), atol=1e-4
        )


def test_json_outputs_classification_and_compression(client):
    x = np.full((2, 48, 48, 3), 120, np.uint8)
    inp = triton.InferInput("faces", [2, 48, 48, 3], "UINT8").set_data_from_numpy(x, False)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False, class_count=3)]
    out = client.infer(
        "emotion", [inp], outputs=outputs, request_id="q-7", request_compression_algorithm="gzip"
    )
    assert out.get_response()["id"] == "q-7"
    top = out.as_numpy("probabilities")
    assert top.shape == (2, 3)
    score, index, label = str(top[0, 0]).split(":")
    assert 0 < float(score) <= 1 and int(index) in range(7) and label


def test_errors_reach_the_client_as_protocol_errors(client):
    bad = np.zeros((1, 32, 32, 3), np.uint8)
    inp = triton.InferInput("faces", [1, 32, 32, 3], "UINT8").set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as e:
        client.infer("emotion", [inp])
    assert e.value.status() == "400" and "expected [-1, 48, 48, 3]" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("emotion-pipeline", [inp])
    assert e.value.status() == "400" and "unexpected inference input 'faces'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("happiness")
    assert e.value.status() == "404"
    bad_image = triton.InferInput("image", [1], "BYTES")
    bad_image.set_data_from_numpy(np.array([b"not an image"], dtype=object))
    with pytest.raises(InferenceServerException) as e:
        client.infer("emotion-pipeline", [bad_image])
    assert e.value.status() == "400"


def test_requests_are_counted_per_route(server, client):
    url, _, _ = server
    x = np.zeros((1, 48, 48, 3), np.uint8)
    for _ in range(4):
        inp = triton.InferInput("faces", [1, 48, 48, 3], "UINT8").set_data_from_numpy(x)
        client.infer("emotion", [inp])
    text = requests.get(url + "/metrics", timeout=10).text
    line = 'fer_http_requests_total{endpoint="/v2/models/<name>/infer",method="POST",status="200"}'
    assert sum(float(s.rsplit(" ", 1)[1]) for s in text.splitlines() if s.startswith(line)) >= 4
