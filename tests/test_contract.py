"""The trainer and the service preprocess the same face identically (the model contract)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service import cropping
from service.analyzer import Analyzer, Options
from service.imaging import decode
from service.model.contract import Contract, Preprocessing
from service.model.registry import ModelSlot
from tests.conftest import SHARED, jpeg_bytes
from tests.service.conftest import FakeDetector, FakeModel
from trainer.data.images import read_pixels, to_model_input


def _service_whole_image(data: bytes, size: int) -> np.ndarray:
    model = FakeModel(input_size=size)
    Analyzer(ModelSlot.fixed(model), FakeDetector(), 10**8).analyze(data, Options(detect=False))
    return model.batches[-1][0]


@pytest.mark.parametrize("shape,size", [((48, 48), 96), ((150, 200, 3), 96), ((300, 300, 3), 64)])
def test_whole_image_pipelines_agree(tmp_path, shape, size):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    data = jpeg_bytes(arr)
    (tmp_path / "x.jpg").write_bytes(data)
    trainer_input = to_model_input(read_pixels(tmp_path / "x.jpg"), size)
    np.testing.assert_array_equal(trainer_input, _service_whole_image(data, size))


def test_dataset_image_agrees_byte_for_byte():
    files = sorted((SHARED / "data" / "fer2013" / "test" / "happy").glob("PrivateTest_*.jpg"))[:5]
    if not files:
        pytest.skip("FER2013 not available")
    for f in files:
        np.testing.assert_array_equal(
            to_model_input(read_pixels(f), 96), _service_whole_image(f.read_bytes(), 96)
        )


@pytest.mark.parametrize("side", [30, 96, 200])
def test_face_crop_resize_matches_trainer_resize(side):
    region = np.random.default_rng(1).integers(0, 255, (side, side), dtype=np.uint8)
    prep = Preprocessing(resize_shrink="INTER_AREA", resize_enlarge="INTER_LINEAR")
    np.testing.assert_array_equal(cropping.to_input(region, 96, prep), to_model_input(region, 96))


def test_service_reads_contract_from_exported_metadata(tiny_model):
    from trainer import contract as trainer_contract

    written = trainer_contract.ModelContract.read(tiny_model)
    assert written.preprocessing == trainer_contract.PREPROCESSING
    assert written.face_crop == trainer_contract.FACE_CROP
    # Each side parses the same files into its own typed contract; the rules agree.
    served = Contract.read(tiny_model)
    rules = written.preprocessing
    assert (served.preprocessing.resize_shrink, served.preprocessing.resize_enlarge) == (
        rules.resize_shrink,
        rules.resize_enlarge,
    )
    assert served.preprocessing.color == rules.color
    assert (served.face_crop.square, served.face_crop.scale) == (
        written.face_crop.square,
        written.face_crop.scale,
    )
    assert (served.name, served.version) == (written.name, str(written.version))
    assert served.labels == written.labels and served.input_size == written.input_size
    # The service maps every interpolation name the trainer writes.
    assert rules.resize_shrink in cropping._INTERP and rules.resize_enlarge in cropping._INTERP
    # The calibration the trainer fitted is the one the service applies.
    fitted = written.details["calibration"]
    assert served.calibration is not None
    assert served.calibration.temperature == fitted["temperature"]
    assert served.calibration.uncertain_below == fitted["uncertain_below"]


def test_trainer_and_service_temper_alike():
    from service.model.calibration import temper as served
    from trainer.calibration import temper as fitted

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(7, 0.3), 200).astype(np.float32)
    p[:5, 0] = 0.0  # zeros stay zeros on both sides
    for t in (0.3, 0.6004, 1.0, 4.0):
        np.testing.assert_allclose(served(p, t), fitted(p, t), rtol=1e-5, atol=1e-7)


def test_gray_conversion_is_pillow_luma_for_colour_uploads():
    rgb = np.random.default_rng(2).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    dec = decode(buf.getvalue(), 10**6)
    np.testing.assert_array_equal(dec.gray, np.asarray(Image.fromarray(rgb).convert("L")))
