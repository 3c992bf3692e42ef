"""Runtimes: the choice behind FER_RUNTIME, and OpenVINO and TensorFlow giving the same
answers on the same exported version."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings, SettingsError
from service.model.openvino_runtime import native_bf16, resolve_precision
from service.model.runtime import RuntimeUnavailable, choose, make_classifier, tensorflow_sees_gpu
from tests.conftest import ROOT, copy_tree

pytestmark = pytest.mark.slow  # trains the tiny model once per session


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (37, 48, 48, 3), dtype=np.uint8)


def test_auto_is_openvino_on_a_cpu_and_tensorflow_on_a_gpu():
    assert choose("auto") == ("tensorflow" if tensorflow_sees_gpu() else "openvino")
    assert choose("tensorflow") == "tensorflow" and choose("openvino") == "openvino"
    with pytest.raises(RuntimeUnavailable, match="unknown runtime"):
        choose("onnx")


def test_bad_runtime_settings_are_refused_at_start():
    with pytest.raises(SettingsError, match="FER_RUNTIME='onnx'"):
        Settings.from_env({"FER_RUNTIME": "onnx"})
    with pytest.raises(SettingsError, match="FER_PRECISION"):
        Settings.from_env({"FER_PRECISION": "int8"})
    with pytest.raises(SettingsError, match="FER_INFERENCE_THREADS"):
        Settings.from_env({"FER_INFERENCE_THREADS": "-1"})
    with pytest.raises(RuntimeUnavailable, match="bf16 needs the openvino"):
        make_classifier(Path("."), "tensorflow", "bf16")


def test_threads_per_worker_shares_the_cores():
    import os

    cores = len(os.sched_getaffinity(0))
    assert Settings.from_env({}, workers=1).threads_per_worker() == cores
    assert Settings.from_env({}, workers=cores * 2).threads_per_worker() == 1
    assert Settings.from_env({}, inference_threads=3).threads_per_worker() == 3


def test_a_missing_or_empty_model_folder_is_named_as_such(tmp_path):
    missing = make_classifier(tmp_path / "nothing", "openvino", "f32")
    assert not missing.ready
    assert missing.error == f"FileNotFoundError: model folder {tmp_path / 'nothing'} does not exist"
    (tmp_path / "3").mkdir()  # a version being copied: not complete
    empty = make_classifier(tmp_path, "openvino", "f32")
    assert not empty.ready
    assert empty.error == f"FileNotFoundError: no complete model version in {tmp_path}"


def test_precision_auto_is_bf16_only_where_the_cpu_has_it():
    assert resolve_precision("auto") == ("bf16" if native_bf16() else "f32")
    assert resolve_precision("f32") == "f32"


def test_runtimes_agree_on_the_same_version(tiny_model, faces):
    tf_model = make_classifier(tiny_model, "tensorflow")
    ov_f32 = make_classifier(tiny_model, "openvino", "f32", threads=1)
    ov_auto = make_classifier(tiny_model, "openvino")
    for m in (tf_model, ov_f32, ov_auto):
        assert m.ready and m.warm, m.error
        assert (m.name, m.version, m.labels) == (tf_model.name, "1", tf_model.labels)
    assert (tf_model.runtime, tf_model.precision) == ("tensorflow", "f32")
    assert (ov_f32.runtime, ov_f32.precision, ov_f32.device) == ("openvino", "f32", "CPU")
    ref = tf_model.predict(faces)  # 37 faces + mirrors: two chunks, the last one ragged
    assert ref.shape == (37, 7)
    np.testing.assert_allclose(ov_f32.predict(faces), ref, atol=1e-4)
    np.testing.assert_allclose(ov_auto.predict(faces), ref, atol=0.03)  # bf16 where native
    np.testing.assert_allclose(ov_f32.predict(faces[:1]), ref[:1], atol=1e-4)
    assert ov_f32.predict(faces[:0]).shape == (0, 7)


def test_a_converted_version_is_cached_and_read_back(tiny_model, faces, tmp_path):
    cache = tmp_path / "cache"
    first = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache)
    entries = list((cache / "converted").iterdir())
    assert first.ready and len(entries) == 1 and (entries[0] / "model.xml").is_file()
    xml_time = (entries[0] / "model.xml").stat().st_mtime_ns
    again = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache)
    assert again.ready and (entries[0] / "model.xml").stat().st_mtime_ns == xml_time
    np.testing.assert_allclose(again.predict(faces), first.predict(faces), atol=1e-6)
    # A damaged entry costs a conversion, not the version.
    (entries[0] / "model.xml").write_text("<not a model")
    damaged = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache)
    assert damaged.ready, damaged.error
    np.testing.assert_allclose(damaged.predict(faces), first.predict(faces), atol=1e-6)
    assert (entries[0] / "model.xml").read_text().startswith("<?xml")  # and it is mended
    # Another version's files: another entry.
    other = copy_tree(tiny_model, tmp_path / "2")
    (other / "labels.json").touch()
    assert make_classifier(other, "openvino", cache_dir=cache).ready
    assert len(list((cache / "converted").iterdir())) == 2


def test_the_first_start_compiles_what_later_starts_read_back(tiny_model, tmp_path):
    # OpenVINO keys compiled networks by the graph, and the converter's graph keyed
    # otherwise than the same graph read back from the cache: the first start's networks
    # were never found again, and the second start compiled (and stored) its own.
    cache = tmp_path / "cache"
    first = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache)
    assert first.ready, first.error
    blobs = _blobs(cache / "compiled")
    assert len(blobs) == 2
    again = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache)
    assert again.ready and _blobs(cache / "compiled") == blobs


def test_compiling_into_the_cache_waits_for_another_process(tiny_model, tmp_path):
    # Workers compiling one model into one cache folder at once raced on OpenVINO's blob,
    # and one was left without a model (seen in the api container): compiling waits while
    # another process holds the folder's lock, and then succeeds.
    cache = tmp_path / "cache"
    cache.mkdir()
    loaded: list = []

    def load():
        loaded.append(make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache))

    with (cache / "compile.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another open file: flock excludes it too
        t = threading.Thread(target=load)
        t.start()
        deadline = time.monotonic() + 60
        while not list(cache.glob("converted/*/model.xml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # compiling the tiny model takes well under a second here
        assert t.is_alive() and not list(cache.glob("compiled/*/*.blob"))
    t.join(60)
    assert loaded and loaded[0].ready, loaded[0].error if loaded else "no model"
    assert list(cache.glob("compiled/*/*.blob"))


def test_openvino_pins_no_core(tiny_model, yunet_path):
    # Pinned, every gunicorn worker's inference thread went to core 0: half the throughput.
    from service.detection import YuNetOpenVINODetector

    model = make_classifier(tiny_model, "openvino", threads=1)
    detector = YuNetOpenVINODetector(yunet_path, threads=1)
    nets = [net.requests.compiled for net in detector.networks]
    assert len(nets) > 1  # the fixed shapes and the one for any size, compiled at start
    for compiled in (model._requests.compiled, *nets):
        assert compiled.get_property("ENABLE_CPU_PINNING") is False
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_openvino_answers_threads_at_once_as_it_answers_one(tiny_model, faces):
    model = make_classifier(tiny_model, "openvino", "f32", threads=1)
    expected = [model.predict(faces[i : i + 3]) for i in range(0, 24, 3)]
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        for _ in range(5):
            got[i] = model.predict(faces[i * 3 : i * 3 + 3])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(got[i], want)


def test_openvino_refuses_a_broken_version_with_the_reason(tiny_model, tmp_path):
    bad = copy_tree(tiny_model, tmp_path / "3")
    (bad / "saved_model.pb").write_bytes(b"\x00garbage" * 100)
    model = make_classifier(bad, "openvino")
    assert not model.ready and "Saved Model cannot be parsed" in (model.error or "")
    other = copy_tree(tiny_model, tmp_path / "4")
    meta = json.loads((other / "metadata.json").read_text())
    (other / "metadata.json").write_text(json.dumps({**meta, "signature": "other"}))
    refused = make_classifier(other, "openvino")
    assert not refused.ready and "serving_default" in (refused.error or "")


def test_a_version_openvino_cannot_convert_leaves_logging_as_it_was(tiny_model, tmp_path):
    # OpenVINO sets the root logger to ERROR while converting and, on failure, left it so:
    # every INFO line after one broken version was lost.
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers), list(root.filters))
    bad = copy_tree(tiny_model, tmp_path / "9")
    (bad / "variables" / "variables.data-00000-of-00001").write_bytes(b"\x00" * 64)
    assert not make_classifier(bad, "openvino", cache_dir=None).ready
    assert (root.level, list(root.handlers), list(root.filters)) == before


# The whole service, on OpenVINO, in a process where importing TensorFlow fails.
NO_TF = """
import sys
for name in ("tensorflow", "keras", "tf_keras"):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
import numpy as np, io
from PIL import Image
from service.app import create_app
from service.config import Settings
from service.model.runtime import choose
from tests.service.conftest import FakeDetector
assert choose("auto") == "openvino"
settings = Settings.from_env({}, model_dir=sys.argv[1], json_logs=False)
app = create_app(settings, detector=FakeDetector(), load_async=False)
buf = io.BytesIO()
Image.fromarray(np.full((48, 48), 128, np.uint8)).save(buf, "PNG")
r = app.test_client().post("/predict?detect=false", data=buf.getvalue(),
                           headers={"Content-Type": "image/png"})
assert r.status_code == 200, r.get_json()
ready = app.test_client().get("/ready").get_json()
print(ready["runtime"], len(r.get_json()["faces"]), sys.modules["tensorflow"] is None)
"""


def test_the_service_runs_without_tensorflow(tiny_model):
    out = subprocess.run(
        [sys.executable, "-c", NO_TF, str(tiny_model.parent)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["openvino", "1", "True"]


def test_converting_a_version_sends_no_telemetry(tiny_model, tmp_path):
    # OpenVINO's converter reports usage to Google Analytics unless told not to; the
    # service loads it with the telemetry package made unimportable (its own no-op stub).
    code = (
        "import sys; from pathlib import Path; from service.model.openvino_runtime import convert; "
        f"convert(Path({str(tiny_model)!r})); "
        "import openvino.tools.ovc.convert_impl as c; "
        "print(c.tm.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "openvino.tools.ovc.telemetry_stub"
    assert not (tmp_path / "intel").exists()  # nothing written to $HOME either


def _count_calls(model, monkeypatch, names=("_one_face", "_requests")) -> list[str]:
    calls: list[str] = []
    for name in names:
        real = getattr(model, name)

        class Counting:
            def get(self, real=real, name=name):
                calls.append(name)
                return real.get()

        monkeypatch.setattr(model, name, Counting())
    return calls


def test_one_face_runs_on_the_network_compiled_for_its_pair(tiny_model, faces, monkeypatch):
    from service.model import openvino_runtime

    model = make_classifier(tiny_model, "openvino", "f32", threads=1)
    assert model.ready and model._one_face is not None and model.one_face_batch == 2
    calls = _count_calls(model, monkeypatch)
    one = model.predict(faces[:1])  # the face and its mirror: batch 2
    many = model.predict(faces[:3])
    assert calls == ["_one_face", "_requests"]
    np.testing.assert_allclose(one, many[:1], atol=1e-5)
    assert openvino_runtime.PAIR == 2


def _static_batches(monkeypatch) -> list[int]:
    """The batch sizes of the fixed-shape networks compiled from now on."""
    from service.model import openvino_runtime

    real, batches = openvino_runtime.core(), []

    class Core:
        def compile_model(self, model, *args, **kwargs):
            shape = model.inputs[0].get_partial_shape()
            if shape.is_static:
                batches.append(shape[0].get_length())
            return real.compile_model(model, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(openvino_runtime, "core", lambda: Core())
    return batches


def test_without_flip_tta_one_face_runs_on_a_network_for_one_and_no_pair_is_compiled(
    tiny_model, faces, monkeypatch
):
    # Without flip TTA a face is a batch of 1: the network for a pair served nothing (it
    # was compiled anyway, at start-up time and memory), and one face ran on the slower
    # any-batch network.
    batches = _static_batches(monkeypatch)
    model = make_classifier(tiny_model, "openvino", "f32", threads=1, flip_tta=False)
    assert model.ready, model.error
    assert batches == [1] and model.one_face_batch == 1
    calls = _count_calls(model, monkeypatch)
    one = model.predict(faces[:1])
    two = model.predict(faces[:2])
    assert calls == ["_one_face", "_requests"]
    np.testing.assert_allclose(one, two[:1], atol=1e-5)
    reference = make_classifier(tiny_model, "tensorflow", flip_tta=False)
    np.testing.assert_allclose(one, reference.predict(faces[:1]), atol=1e-4)


def test_a_version_whose_one_face_network_fails_serves_from_the_any_batch_one(
    tiny_model, faces, monkeypatch, caplog
):
    from service.model import openvino_runtime

    real = openvino_runtime.core().compile_model

    def no_static_pair(model, *args, **kwargs):
        if model.inputs[0].get_partial_shape().is_static:
            raise RuntimeError("no kernel for this shape")
        return real(model, *args, **kwargs)

    class Core:
        compile_model = staticmethod(no_static_pair)

    monkeypatch.setattr(openvino_runtime, "core", lambda: Core())
    model = make_classifier(tiny_model, "openvino", "f32", threads=1)
    assert model.ready and model._one_face is None, model.error
    assert "no network for one face" in caplog.text
    reference = make_classifier(tiny_model, "tensorflow")
    np.testing.assert_allclose(model.predict(faces[:1]), reference.predict(faces[:1]), atol=1e-4)


def _backdate(folder: Path) -> None:
    """Its subfolders an hour and more in the past, oldest first, in their present order."""
    now = time.time()
    entries = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for age, p in enumerate(reversed(entries), start=1):
        os.utime(p, (now - 3600 - age * 10, now - 3600 - age * 10))


def _blobs(compiled: Path) -> dict[str, int]:
    return {str(p.relative_to(compiled)): p.stat().st_mtime_ns for p in compiled.rglob("*.blob")}


def test_the_compiled_cache_keeps_the_versions_last_used_not_last_written(tiny_model, tmp_path):
    # The prune went by the blobs' write time, and a cache hit writes nothing: the live
    # version's networks, compiled first and read back at every start since, were the
    # first removed once other versions had compiled, and the next start compiled again.
    from service.model.openvino_runtime import KEEP_COMPILED

    cache = tmp_path / "cache"
    compiled = cache / "compiled"

    def load(folder: Path, threads: int):
        # Another thread count: other networks, also for the same model's blob names.
        model = make_classifier(folder, "openvino", "f32", threads=threads, cache_dir=cache)
        assert model.ready, model.error

    others = []
    for i in range(KEEP_COMPILED):
        other = copy_tree(tiny_model, tmp_path / f"v{i}")
        (other / "labels.json").touch()  # another version's files
        others.append(other)
    load(tiny_model, 1)
    for i, other in enumerate(others[:-1]):
        load(other, i + 2)
    _backdate(compiled)  # in the order written, whatever the file system's time grain
    load(tiny_model, 1)  # the live version starts again: read back, nothing written
    load(others[-1], KEEP_COMPILED + 1)
    before = _blobs(compiled)
    load(tiny_model, 1)
    assert _blobs(compiled) == before  # read back again, not compiled again
    folders = [p for p in compiled.iterdir() if p.is_dir()]
    assert len(folders) == KEEP_COMPILED  # the one used longest ago is gone


def test_the_compiled_cache_removes_stray_blobs_and_nothing_else(tiny_model, tmp_path):
    cache = tmp_path / "cache"
    compiled = cache / "compiled"
    compiled.mkdir(parents=True)
    (compiled / "123.blob").write_bytes(b"x")  # where earlier releases compiled into
    (compiled / "README").write_text("an operator's note")
    model = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=cache)
    assert model.ready, model.error
    assert sorted(p.name for p in compiled.iterdir() if p.is_file()) == ["README"]
    (version,) = [p for p in compiled.iterdir() if p.is_dir()]
    assert len(list(version.glob("*.blob"))) == 2  # any batch, and the pair


def test_the_converted_cache_keeps_the_versions_last_used(tiny_model, tmp_path):
    from service.model.openvino_runtime import KEEP_CACHED

    cache, converted = tmp_path / "cache", tmp_path / "cache" / "converted"
    others = []
    for i in range(KEEP_CACHED):
        other = copy_tree(tiny_model, tmp_path / f"v{i}")
        (other / "labels.json").touch()  # another version's files: another entry
        others.append(other)

    def load(folder):
        assert make_classifier(folder, "openvino", "f32", threads=1, cache_dir=cache).ready

    load(tiny_model)
    (live,) = [p.name for p in converted.iterdir()]
    for other in others[:-1]:
        load(other)
    _backdate(converted)
    load(tiny_model)  # read back, so used: it stays
    load(others[-1])
    left = {p.name for p in converted.iterdir()}
    assert live in left and len(left) == KEEP_CACHED


def test_a_cache_entry_a_dead_worker_left_half_written_is_removed(tiny_model, tmp_path):
    # A worker killed while it wrote an entry (gunicorn's timeout, the OOM killer) left a
    # whole model in a hidden temporary folder, which nothing ever removed.
    from service.model.openvino_runtime import STALE_TMP_SECONDS

    converted = tmp_path / "cache" / "converted"
    dead, busy = converted / ".0123abcd.999999.tmp", converted / ".4567ef01.999998.tmp"
    for d in (dead, busy):
        d.mkdir(parents=True)
        (d / "model.bin").write_bytes(b"x" * 1000)
    old = time.time() - STALE_TMP_SECONDS - 60
    os.utime(dead, (old, old))
    model = make_classifier(tiny_model, "openvino", "f32", threads=1, cache_dir=tmp_path / "cache")
    assert model.ready, model.error
    assert not dead.exists() and busy.is_dir()  # another worker may be writing that one


@pytest.mark.parametrize("flip_tta", [True, False])
def test_openvino_meets_every_batch_a_request_can_make_at_warm_up(
    tiny_model, faces, monkeypatch, flip_tta
):
    # OpenVINO's any-batch network prepares each batch size the first time it meets it
    # (15 ms on a batch of 6 that then takes 6): a photo of three faces must not pay that.
    from service.model.openvino_runtime import OpenVINOClassifier

    seen: list[int] = []
    real = OpenVINOClassifier._call

    def spy(self, x):
        seen.append(len(x))
        return real(self, x)

    monkeypatch.setattr(OpenVINOClassifier, "_call", spy)
    model = make_classifier(tiny_model, "openvino", "f32", threads=1, flip_tta=flip_tta)
    assert model.ready, model.error
    warmed, requested = set(seen), set()
    for n in range(1, len(faces) + 1):
        seen.clear()
        model.predict(faces[:n])
        requested |= set(seen)
    assert requested <= warmed and 32 in requested
    assert len(warmed) == (16 if flip_tta else 32)


def test_compile_lock_waits_for_its_holder_but_not_forever(tmp_path, monkeypatch, caplog):
    import fcntl
    import logging
    import threading
    import time

    from service.model import openvino_runtime

    monkeypatch.setattr(openvino_runtime, "LOCK_WAIT_S", 0.5)
    # Another open of the file conflicts as another process's would (flock is per open).
    held = open(tmp_path / "compile.lock", "a")  # closed by the timer below
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.15, held.close).start()  # a holder that finishes: waited for
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="service.model"):
        with openvino_runtime.compile_lock(tmp_path):
            waited = time.monotonic() - t0
    assert 0.1 <= waited < 0.45 and "without it" not in caplog.text
    with open(tmp_path / "compile.lock", "a") as stuck:  # a holder that never lets go
        fcntl.flock(stuck, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="service.model"):
            with openvino_runtime.compile_lock(tmp_path):
                waited = time.monotonic() - t0
    assert 0.5 <= waited < 2 and "compiling without it" in caplog.text
