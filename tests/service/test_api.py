"""The HTTP API with a fake model and detector: formats, options, results, readiness, auth."""

from __future__ import annotations

import base64
import io
import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageOps

from service.app import create_app
from service.detection import Face
from service.imaging import decode, to_gray
from tests.conftest import CLASSES, jpeg_bytes
from tests.service.conftest import CheckedClient, FakeDetector, FakeModel


def photo(w=240, h=160, value=128) -> bytes:
    return jpeg_bytes(np.full((h, w, 3), value, np.uint8))


def test_multipart_returns_faces_largest_first_with_all_fields(client, model):
    r = client.post("/predict", data={"image": (io.BytesIO(photo()), "p.jpg")})
    assert r.status_code == 200
    body = r.json
    assert (body["width"], body["height"]) == (240, 160)
    # A version without calibration: the network's probabilities, no uncertain threshold.
    assert body["model"] == {"name": "fake", "version": "7", "calibrated": False}
    assert body["uncertain_below"] is None
    assert [f["uncertain"] for f in body["faces"]] == [None, None]
    assert [f["box"] for f in body["faces"]] == [
        {"x": 100, "y": 20, "width": 80, "height": 90},
        {"x": 10, "y": 10, "width": 40, "height": 40},
    ]
    face = body["faces"][0]
    assert face["detector_score"] == 0.95
    assert set(face["probabilities"]) == set(CLASSES)
    assert face["emotion"] == face["top"][0]["emotion"] and len(face["top"]) == 3
    assert set(body["timings_ms"]) == {"decode", "detect", "crop", "classify", "total"}
    # Both faces went through the model in one batched call.
    assert [len(b) for b in model.batches] == [2]


def test_raw_body_and_base64_json_give_the_same_answer(client):
    raw = client.post("/predict", data=photo(), content_type="image/jpeg").json
    js = client.post("/predict", json={"image": base64.b64encode(photo()).decode()}).json
    url = client.post(
        "/predict", json={"image": "data:image/jpeg;base64," + base64.b64encode(photo()).decode()}
    ).json
    assert raw["faces"] == js["faces"] == url["faces"]


def test_options_from_query_form_and_json(client, model):
    r = client.post("/predict?max_faces=1&top_k=7", data=photo(), content_type="image/jpeg")
    assert len(r.json["faces"]) == 1 and r.json["faces_detected"] == 2
    assert len(r.json["faces"][0]["top"]) == 7
    r = client.post(
        "/predict", data={"image": (io.BytesIO(photo()), "p.jpg"), "min_face_size": "50"}
    )
    assert [f["box"]["width"] for f in r.json["faces"]] == [80]
    r = client.post(
        "/predict", json={"image": base64.b64encode(photo()).decode(), "annotate": True}
    )
    annotated = Image.open(io.BytesIO(base64.b64decode(r.json["annotated_image"])))
    assert annotated.size == (240, 160)


def test_detect_false_classifies_the_whole_image(client, detector):
    dark = client.post("/predict?detect=false", data=photo(value=10), content_type="image/jpeg")
    bright = client.post("/predict?detect=false", data=photo(value=250), content_type="image/jpeg")
    assert detector.calls == 0
    assert dark.json["whole_image"] is True and dark.json["detector"] == "none"
    assert dark.json["faces"][0]["box"] == {"x": 0, "y": 0, "width": 240, "height": 160}
    assert dark.json["faces"][0]["detector_score"] is None
    assert (dark.json["faces"][0]["emotion"], bright.json["faces"][0]["emotion"]) == (
        "angry",
        "surprise",
    )


def test_no_face_is_200_with_empty_list(settings, model):
    app = create_app(settings, model=model, detector=FakeDetector([]))
    app.test_client_class = CheckedClient
    r = app.test_client().post("/predict", data=photo(640, 480), content_type="image/jpeg")
    assert r.status_code == 200 and r.json["faces"] == [] and r.json["whole_image"] is False


def test_small_square_crop_without_detection_is_classified_whole(settings, model):
    app = create_app(settings, model=model, detector=FakeDetector([]))
    app.test_client_class = CheckedClient
    r = app.test_client().post("/predict", data=photo(48, 48), content_type="image/jpeg")
    assert r.json["whole_image"] is True and len(r.json["faces"]) == 1


def test_batch_keeps_order_and_isolates_bad_images(client):
    files = [
        (io.BytesIO(photo()), "a.jpg"),
        (io.BytesIO(b"junk"), "b.jpg"),
        (io.BytesIO(photo(value=250)), "c.jpg"),
    ]
    r = client.post("/predict/batch?detect=false", data={"image": files})
    assert r.status_code == 200
    res = r.json["results"]
    assert [x["filename"] for x in res] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [x["ok"] for x in res] == [True, False, True]
    assert res[1]["status"] == 400 and res[1]["error"]["code"] == "bad_image"


def test_batch_limit(client, settings):
    files = [(io.BytesIO(photo(8, 8)), f"{i}.jpg") for i in range(settings.max_batch_images + 1)]
    r = client.post("/predict/batch", data={"image": files})
    assert r.status_code == 400 and "limit" in r.json["error"]["message"]


def test_health_ready_and_models(client):
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["labels"] == CLASSES
    info = client.get("/v1/models").json
    assert info["version"] == "7" and info["input_size"] == 48
    assert info["metrics"]["test"]["accuracy"] == 0.5
    assert info["device"] == "unknown" and info["batching"] is False  # fake; default off


def test_not_ready_is_503_with_retry_after(settings, detector):
    app = create_app(settings, model=FakeModel(ready=False), detector=detector)
    app.test_client_class = CheckedClient
    c = app.test_client()
    assert c.get("/health").status_code == 200
    r = c.get("/ready")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    r = c.post("/predict", data=photo(), content_type="image/jpeg")
    assert r.status_code == 503 and r.json["error"]["code"] == "model_not_ready"
    assert r.headers["Retry-After"]
    assert c.get("/v1/models").status_code == 503


def test_model_that_fails_to_load_is_not_ready(tmp_path, settings, detector):
    app = create_app(settings, detector=detector, load_async=False)  # model_dir has nothing
    app.test_client_class = CheckedClient
    r = app.test_client().get("/ready")
    assert r.status_code == 503 and r.json["ready"] is False
    assert "does not exist" in r.json["error"]


def test_api_key_guards_predict_only(settings, model, detector):
    from dataclasses import replace

    app = create_app(replace(settings, api_key="s3cret"), model=model, detector=detector)
    app.test_client_class = CheckedClient
    c = app.test_client()
    r = c.post("/predict", data=photo(), content_type="image/jpeg")
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    r = c.post("/predict", data=photo(), content_type="image/jpeg", headers={"X-API-Key": "nope"})
    assert r.status_code == 401
    r = c.post("/predict", data=photo(), content_type="image/jpeg", headers={"X-API-Key": "s3cret"})
    assert r.status_code == 200
    assert c.post("/predict/batch").status_code == 401
    for path in ("/health", "/ready", "/metrics", "/v1/models"):
        assert c.get(path).status_code == 200, path


def test_request_id_is_echoed_or_made(client):
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    r = client.post(
        "/predict",
        data=b"",
        content_type="image/jpeg",
        headers={"X-Request-ID": "bad id with spaces"},
    )
    made = r.headers["X-Request-ID"]
    assert made != "bad id with spaces" and len(made) == 32
    assert r.json["request_id"] == made


def test_metrics_count_requests_stages_faces_and_emotions(client):
    def value(text, name):
        for line in text.splitlines():
            if (
                line.startswith(name + " ")
                or line.startswith(name + "{")
                and line.split(" ")[0] == name
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = client.get("/metrics").data.decode()
    client.post("/predict?detect=false", data=photo(value=250), content_type="image/jpeg")
    client.post("/predict", data=b"junk", content_type="image/jpeg")
    text = client.get("/metrics").data.decode()
    emo = 'fer_predictions_total{emotion="surprise"}'
    assert value(text, emo) == value(before, emo) + 1
    ok = 'fer_http_requests_total{endpoint="/predict",method="POST",status="200"}'
    assert value(text, ok) == value(before, ok) + 1
    err = 'fer_errors_total{code="bad_image"}'
    assert value(text, err) == value(before, err) + 1
    st = 'fer_stage_duration_seconds_count{stage="classify"}'
    assert value(text, st) == value(before, st) + 1
    assert "fer_faces_per_image_bucket" in text and "fer_http_requests_in_flight" in text


@pytest.mark.parametrize(
    "path,method,status,code",
    [
        ("/nope", "get", 404, "not_found"),
        ("/predict", "get", 405, "method_not_allowed"),
        ("/health", "post", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_are_json(client, path, method, status, code):
    client.unchecked = True  # these paths / methods are, rightly, not in the spec
    r = getattr(client, method)(path)
    assert r.status_code == status and r.json["error"]["code"] == code
    if status == 405:
        assert "Allow" in r.headers


def test_unexpected_exception_is_500_without_internals(settings, detector):
    class Broken(FakeModel):
        def predict(self, faces):
            raise RuntimeError("secret internal detail")

    app = create_app(settings, model=Broken(), detector=detector)
    app.test_client_class = CheckedClient
    r = app.test_client().post("/predict", data=photo(), content_type="image/jpeg")
    assert r.status_code == 500 and r.json["error"]["code"] == "internal_error"
    assert "secret" not in r.get_data(as_text=True)


def test_face_box_outside_image_is_padded_not_crashing(settings, model):
    app = create_app(settings, model=model, detector=FakeDetector([Face(0, 0, 20, 150, 0.8)]))
    app.test_client_class = CheckedClient
    r = app.test_client().post("/predict", data=photo(), content_type="image/jpeg")
    assert r.status_code == 200 and len(r.json["faces"]) == 1
    assert model.batches[-1].shape == (1, 48, 48, 3)


def test_access_log_is_json_with_request_id_and_timings(client, caplog):
    import json
    import logging

    from service.logs import configure

    with caplog.at_level(logging.INFO, logger="service.access"):
        client.post(
            "/predict", data=photo(), content_type="image/jpeg", headers={"X-Request-ID": "log-1"}
        )
    rec = [r for r in caplog.records if r.name == "service.access"][-1]
    assert (rec.request_id, rec.status, rec.faces) == ("log-1", 200, 2)
    assert set(rec.timings_ms) >= {"decode", "detect", "classify"}
    configure("INFO", json_lines=True)
    line = json.loads(logging.getLogger().handlers[0].format(rec))
    assert line["request_id"] == "log-1" and line["level"] == "INFO"
    assert line["pid"] == os.getpid()  # tells gunicorn workers apart
    assert "image" not in line  # bytes are never logged


def test_large_jpeg_decodes_smaller_but_answers_in_upload_pixels(settings, model):
    # 4000x3000 decodes at 1/4 (1000x750, the default FER_DECODE_MAX_SIDE being 800): the
    # fake detector's box, given in decoded pixels, comes back 4x, and the reported size is
    # the upload's.
    detector = FakeDetector([Face(500, 400, 300, 300, 0.9)])
    app = create_app(
        replace(settings, max_pixels=20_000_000),
        model=model,
        detector=detector,
    )
    app.test_client_class = CheckedClient
    big = np.zeros((3000, 4000, 3), np.uint8)
    r = app.test_client().post(
        "/predict?min_face_size=500&annotate=true", data=jpeg_bytes(big), content_type="image/jpeg"
    )
    assert (r.json["width"], r.json["height"]) == (4000, 3000)
    assert r.json["faces"][0]["box"] == {"x": 2000, "y": 1600, "width": 1200, "height": 1200}
    annotated = Image.open(io.BytesIO(base64.b64decode(r.json["annotated_image"])))
    assert annotated.size == (1000, 750)
    # min_face_size is in upload pixels too: 1200 passes 500, fails 1300.
    r = app.test_client().post(
        "/predict?min_face_size=1300", data=jpeg_bytes(big), content_type="image/jpeg"
    )
    assert r.json["faces"] == []


def test_reduced_decode_finds_the_same_face_as_full_decode(astronaut, yunet_path):
    from service.detection import YuNetDetector
    from service.imaging import decode

    big = np.asarray(Image.fromarray(astronaut).resize((4096, 4096)))
    data = jpeg_bytes(big)
    det = YuNetDetector(yunet_path)
    boxes = []
    for max_side in (0, 1600):
        img = decode(data, 40_000_000, max_side)
        (face,) = det.detect(img.rgb)
        boxes.append([v * img.scale for v in (face.x, face.y, face.width, face.height)])
        assert (img.original_width, img.original_height) == (4096, 4096)
    assert img.width == 2048  # decoded at 1/2
    np.testing.assert_allclose(boxes[1], boxes[0], rtol=0.05, atol=20)


def test_exif_rotated_large_jpeg_reports_the_upright_size(settings, model, detector):
    im = Image.fromarray(np.zeros((3000, 4000, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    app = create_app(
        replace(settings, max_pixels=20_000_000),
        model=model,
        detector=detector,
    )
    r = app.test_client().post("/predict", data=buf.getvalue(), content_type="image/jpeg")
    assert (r.json["width"], r.json["height"]) == (3000, 4000)


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_near_square_jpeg_turned_by_exif_reports_its_upright_size(orientation):
    # Decoded at 1/8 it comes out square (500x500): the turn cannot be seen in the size.
    im = Image.fromarray(np.zeros((3996, 4000, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    img = decode(buf.getvalue(), 40_000_000, 500)
    assert img.width == img.height == 500
    assert (img.original_width, img.original_height) == (3996, 4000)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_block_pillow_cannot_write_back_still_gives_one_upright_image(
    orientation, monkeypatch
):
    # Real photos carry tags Pillow reads but cannot serialise again (python-pillow
    # #8965, #6799): turning in place by exif_transpose rewrote the block after turning
    # the pixels, raised, and the size stayed unturned. Pixels, gray and size must agree.
    rgb = np.random.default_rng(orientation).integers(0, 256, (32, 64, 3), np.uint8)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))

    def unwritable(self, *args, **kwargs):
        raise ValueError("cannot write this EXIF block")

    monkeypatch.setattr(Image.Exif, "tobytes", unwritable)
    img = decode(buf.getvalue(), 40_000_000)
    np.testing.assert_array_equal(img.rgb, want)
    assert img.gray.shape == img.rgb.shape[:2]
    assert (img.original_height, img.original_width) == want.shape[:2]


def test_decode_gives_the_gray_image_of_its_rgb_one():
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), np.uint8)
    for mode in ("RGB", "RGBA", "L", "P", "CMYK", "I;16"):
        buf = io.BytesIO()
        src = Image.fromarray(rgb)
        src = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257) if mode == "I;16" else src
        src.convert(mode if mode != "I;16" else src.mode).save(buf, "TIFF")
        img = decode(buf.getvalue(), 40_000_000)
        np.testing.assert_array_equal(img.gray, to_gray(img.rgb))
