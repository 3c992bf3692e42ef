"""Both real detector backends on real photos: the right boxes, mapped back from downscaling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from service.detection import (
    BlazeFaceDetector,
    Face,
    YuNetDetector,
    YuNetOpenVINODetector,
    make_detector,
)
from service.detection.base import to_faces
from tests.conftest import SHARED

ASTRONAUT_FACE = (178, 63, 90, 113)  # hand-checked box of the face in skimage's astronaut


def iou(f: Face, box) -> float:
    x, y, w, h = box
    ix = max(0, min(f.x + f.width, x + w) - max(f.x, x))
    iy = max(0, min(f.y + f.height, y + h) - max(f.y, y))
    inter = ix * iy
    return inter / (f.area + w * h - inter)


@pytest.fixture(params=["yunet", "yunet-openvino", "blazeface"])
def detector(request, yunet_path):
    if request.param == "yunet":
        return YuNetDetector(yunet_path)
    if request.param == "yunet-openvino":
        return YuNetOpenVINODetector(yunet_path, threads=1)
    return BlazeFaceDetector()


def test_finds_the_astronaut(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    assert iou(faces[0], ASTRONAUT_FACE) > 0.5 and faces[0].score > 0.9


def test_finds_four_faces_in_a_mosaic(detector, astronaut):
    mosaic = np.vstack([np.hstack([astronaut, astronaut[:, ::-1]])] * 2)
    faces = detector.detect(mosaic)
    assert len(faces) == 4
    xs = sorted(f.x for f in faces)
    assert xs[1] < 300 < xs[2]  # two on each side


def test_boxes_are_mapped_back_from_the_downscaled_image(detector, astronaut):
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_LINEAR)  # > 640 px
    faces = detector.detect(big)
    assert len(faces) == 1
    assert iou(faces[0], tuple(v * 4 for v in ASTRONAUT_FACE)) > 0.5


def test_no_face_in_noise(detector):
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_openvino_yunet_gives_opencvs_boxes(yunet_path, astronaut):
    """Same network, same decoding: the same faces, to the pixel, as cv2.FaceDetectorYN."""
    from bench.detection import scenes

    photos = [(astronaut, [])]
    photos.append((np.vstack([np.hstack([astronaut, astronaut[:, ::-1]])] * 2), []))
    if (SHARED / "data" / "fer2013").is_dir():
        photos += scenes(SHARED, 25)  # 1-8 FER2013 faces of 40-160 px on a photo
    reference, ours = YuNetDetector(yunet_path), YuNetOpenVINODetector(yunet_path, threads=1)
    for img, _ in photos:
        want, got = reference.detect(img), ours.detect(img)
        assert len(got) == len(want)
        key = lambda f: (f.x, f.y)  # noqa: E731
        for a, b in zip(sorted(want, key=key), sorted(got, key=key), strict=True):
            assert max(abs(a.x - b.x), abs(a.y - b.y), abs(a.width - b.width)) <= 1
            assert abs(a.score - b.score) < 1e-3


def test_openvino_yunet_in_bf16_keeps_every_face_f32_finds(yunet_path, astronaut):
    """bf16 moves the scores a little: its lowered threshold must not lose a face f32 keeps
    (on a CPU without native bf16 the hint computes in f32, and this holds trivially)."""
    from bench.detection import scenes
    from service.detection import yunet_openvino

    photos = [astronaut, np.vstack([np.hstack([astronaut, astronaut[:, ::-1]])] * 2)]
    if (SHARED / "data" / "fer2013").is_dir():
        photos += [img for img, _ in scenes(SHARED, 120)]  # one face is lost at margin 0
    f32 = YuNetOpenVINODetector(yunet_path, threads=1, precision="f32")
    bf16 = YuNetOpenVINODetector(yunet_path, threads=1, precision="bf16")
    assert bf16._threshold == pytest.approx(0.7 - yunet_openvino.BF16_SCORE_MARGIN)
    assert f32._threshold == 0.7
    for img in photos:
        got = bf16.detect(img)
        for a in f32.detect(img):
            near = [b for b in got if max(abs(a.x - b.x), abs(a.y - b.y)) <= 6]
            assert len(near) == 1, (a, got)
            assert abs(near[0].width - a.width) <= 6
            assert abs(near[0].score - a.score) < yunet_openvino.BF16_SCORE_MARGIN


def test_the_service_detector_follows_fer_precision(yunet_path):
    assert make_detector("yunet", str(yunet_path), 0, 640, 1, "f32").precision == "f32"
    assert make_detector("yunet", str(yunet_path), 0, 640, 1, "bf16").precision == "bf16"
    auto = make_detector("yunet", str(yunet_path), 0, 640, 1, "auto").precision
    assert auto in ("bf16", "f32")


def test_openvino_yunet_compiles_nothing_on_the_request_path(yunet_path, astronaut, monkeypatch):
    # Every network is compiled at start (the fixed shapes, and one for any size): photos
    # of new sizes, from several threads, find the same faces as OpenCV and compile nothing.
    from concurrent.futures import ThreadPoolExecutor

    import service.model.openvino_runtime
    from service.detection import yunet_openvino

    reference, ours = YuNetDetector(yunet_path), YuNetOpenVINODetector(yunet_path, threads=1)
    assert len(ours.networks) == len(yunet_openvino.STATIC_SHAPES) + 1

    def no_core():
        raise AssertionError("OpenVINO was asked to compile on the request path")

    monkeypatch.setattr(service.model.openvino_runtime, "core", no_core)
    sizes = [(200 + 24 * i, 180 + 16 * i) for i in range(20)]  # 20 padded sizes
    sizes += [(640, 480), (480, 640), (1280, 720), (500, 700), (700, 500)]  # fixed ones too
    photos = [cv2.resize(astronaut, s, interpolation=cv2.INTER_AREA) for s in sizes]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(ours.detect, photos + photos[:4]))
    for img, faces in zip(photos + photos[:4], got, strict=True):
        want = reference.detect(img)
        assert len(faces) == len(want) >= 1, img.shape
        for a, b in zip(want, faces, strict=True):
            assert max(abs(a.x - b.x), abs(a.y - b.y), abs(a.width - b.width)) <= 1
            assert abs(a.score - b.score) < 1e-3


def test_factory_prefers_yunet_when_configured(yunet_path):
    # Each says what runs it and in what precision (/ready and /v1/models report both).
    ov = make_detector("auto", str(yunet_path), 0, 640, precision="bf16")
    assert isinstance(ov, YuNetOpenVINODetector) and (ov.runtime, ov.precision) == (
        "openvino",
        "bf16",
    )
    cv = make_detector("yunet-opencv", str(yunet_path), 0, 640, precision="bf16")
    assert isinstance(cv, YuNetDetector) and (cv.runtime, cv.precision) == ("opencv", "f32")
    blaze = make_detector("auto", "", 0, 640)
    assert blaze.name == "blazeface" and blaze.score == 0.5
    assert (blaze.runtime, blaze.precision) == ("opencv", "f32")
    with pytest.raises(ValueError):
        make_detector("yunet", "", 0.7, 640)
    with pytest.raises(FileNotFoundError):
        make_detector("yunet", "/nonexistent.onnx", 0.7, 640)


def test_boxes_with_non_finite_values_are_dropped():
    # A detector's decoding overflowed on an image 1 pixel high and 40,000 wide: the
    # infinite box reached int() and the request was a 500 (issue 17).
    boxes = np.array(
        [[10, 10, 20, 20], [np.inf, 0, 5, 5], [0, np.nan, 5, 5], [1e300, 1e300, 9, 9], [0, 0, 4, 4]]
    )
    scores = np.array([0.9, 0.9, 0.9, 0.9, np.inf])
    assert to_faces(boxes, scores, 0.5, 100, 100) == [Face(20, 20, 40, 40, 0.9)]


def test_downscale_averages_pixels_when_it_shrinks_much():
    # Bilinear up to 2.5x (cheap, the same faces: service/detection/base.py); beyond that,
    # area averaging: a 1-px checkerboard shrunk 4.06x comes out flat gray (bilinear
    # sampling gives stripes: std 42).
    from service.detection.base import downscale

    board = (np.indices((2600, 2600)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small, scale = downscale(np.repeat(board[..., None], 3, axis=2), 640)
    assert small.shape == (640, 640, 3) and scale == 640 / 2600
    assert small.std() < 2
    mild, scale = downscale(np.zeros((1200, 1600, 3), np.uint8), 640)
    assert mild.shape == (480, 640, 3) and scale == 0.4
