"""The OpenVINO runtime: the same SavedModel folder, converted when a version loads.

OpenVINO reads the trainer's SavedModel directly (``ov.convert_model(folder)``), without
TensorFlow installed, so the model contract stays one artifact. On this project's CPU it
ran a face and its mirror 3-5x faster than TensorFlow's signature call (see
docs/performance.md), in a fraction of the memory. bfloat16 is used where the CPU computes it
natively (AVX512_BF16 or AMX): it did not change accuracy on FER+ PrivateTest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.model.classifier import VersionClassifier
from service.model.contract import SIGNATURE

log = logging.getLogger("service.model")
KEEP_CACHED = 2  # converted versions kept in the cache: the live one and the one before
# Versions whose compiled networks stay in OpenVINO's cache (it removes none itself: one
# folder had grown to 687 MB). Each version compiles into a folder of its own (two
# networks per precision and thread count), touched whenever a worker loads it, so the
# versions kept are the ones last served, not the ones last compiled.
KEEP_COMPILED = 4
# The most common call is one face: with flip TTA the face and its mirror, a batch of 2;
# without, a batch of 1. A network compiled for exactly that batch ran 15-18% faster than
# the any-batch one (versions 6 and 2, bf16, one thread, at batch 1 and at batch 2).
PAIR = 2
# A cache entry is written in a hidden temporary folder and renamed into place; one older
# than this was left by a worker that died writing it (a conversion takes seconds).
STALE_TMP_SECONDS = 3600
_core: Any = None
_core_lock = threading.Lock()


def core() -> Any:
    """One OpenVINO Core per process (it owns the plugins and their thread pools)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively, so bf16 is a speed-up, not an emulation."""
    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 where the CPU has it natively, else f32; ``bf16``/``f32`` as asked."""
    if precision == "auto":
        return "bf16" if native_bf16() else "f32"
    return precision


def cpu_config(precision: str, threads: int) -> dict[str, Any]:
    """Compile options for one worker's model on the CPU.

    No CPU pinning: OpenVINO pins its inference threads (the caller's, with one thread)
    to cores it picks by itself, and gunicorn's workers, not knowing of each other, all
    picked core 0. Measured with 2 workers on 2 cores: each worker at about half a core,
    the other core idle, half the throughput.
    """
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",  # one request at a time per worker thread
        "ENABLE_CPU_PINNING": False,
    }
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class ThreadRequests:
    """Infer requests of one compiled model, one per thread: a request serves one call at
    a time, and gthread workers and the batching collector call from several threads."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self._local = threading.local()

    def get(self) -> Any:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req


class OpenVINOClassifier(VersionClassifier):
    """A SavedModel converted and compiled by OpenVINO for the CPU."""

    runtime = "openvino"
    pad_to_buckets = False  # dynamic batch: no retracing, so no wasted padded faces

    def __init__(
        self,
        folder: Path,
        flip_tta: bool = True,
        precision: str = "auto",
        threads: int = 0,
        cache_dir: Path | None = None,
        calibrate: bool = True,
    ):
        super().__init__(folder, flip_tta, calibrate)
        self.device = "CPU"
        self._precision_setting, self.threads = precision, threads
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._requests: ThreadRequests | None = None
        # The network for exactly one face's batch (one_face_batch), when it compiled.
        self._one_face: ThreadRequests | None = None

    @property
    def one_face_batch(self) -> int:
        """The batch one face makes: with its mirror under flip TTA, alone without."""
        return PAIR if self.flip_tta else 1

    def _open(self) -> None:
        signature = self.contract.signature
        if signature != SIGNATURE:
            raise ValueError(f"signature {signature!r}: OpenVINO converts only {SIGNATURE}")
        self.precision = resolve_precision(self._precision_setting)
        config = cpu_config(self.precision, self.threads)
        key = _key(self.folder) if self.cache_dir is not None else ""
        compiled = self.cache_dir / "compiled" / key if self.cache_dir is not None else None
        if compiled is not None:
            # OpenVINO's own cache of compiled models (keyed by model and options), in
            # this version's folder.
            config["CACHE_DIR"] = str(compiled)
        model = read_version(self.folder, self.cache_dir, key)
        with compile_lock(self.cache_dir):
            self._requests = ThreadRequests(core().compile_model(model, "CPU", config))
            self._one_face = _compile_batch(model, config, self.one_face_batch, self.folder)
            if compiled is not None:
                _touch(compiled)  # a cache hit writes nothing: mark the version used
                prune_newest(compiled.parent, KEEP_COMPILED, stray_blobs=True)

    def _call(self, x: np.ndarray) -> np.ndarray:
        assert self._requests is not None, "called before load"
        one = self._one_face is not None and len(x) == self.one_face_batch
        req = (self._one_face if one else self._requests).get()  # type: ignore[union-attr]
        req.infer([x])
        # Copy: the output tensor's memory is reused by this request's next call.
        return np.array(req.get_output_tensor(0).data, np.float32)


def _compile_batch(
    model: Any, config: dict[str, Any], batch: int, folder: Path
) -> ThreadRequests | None:
    """The version compiled for a batch of exactly ``batch``, or None where it does not
    compile (the any-batch network then serves every call)."""
    try:
        fixed = model.clone()
        shape = fixed.inputs[0].get_partial_shape()
        fixed.reshape({fixed.inputs[0]: [batch, *(d.get_length() for d in list(shape)[1:])]})
        return ThreadRequests(core().compile_model(fixed, "CPU", config))
    except Exception as e:  # noqa: BLE001 - an optimisation only: never refuse a version for it
        log.warning(
            "no network for one face; the any-batch one serves it",
            extra={"folder": str(folder), "error": str(e)[:300]},
        )
        return None


# Longer than any compile seen (an ensemble's first, 23 s), shorter than gunicorn's worker
# timeout (FER_TIMEOUT, 120 s by default), which would kill a worker still waiting.
LOCK_WAIT_S = 60.0


@contextlib.contextmanager
def compile_lock(cache_dir: Path | None):
    """One process at a time compiles into OpenVINO's cache folder.

    Workers that start together compile the same model at once; OpenVINO then races on
    the cached blob (one removes the file another is still writing), and the loser's
    compile_model fails with "cannot set permissions: No such file or directory": a
    worker without a model, seen in 1 of 6 starts of 3 workers on an empty cache. Behind
    the lock, the second worker reads the blob the first wrote instead.

    The wait is bounded: a process that holds the lock and never lets go (a worker
    orphaned by its master, stopped mid-compile, was seen to) would otherwise keep every
    later worker from loading, each killed at gunicorn's timeout and started again to wait
    once more. After LOCK_WAIT_S the worker compiles without the lock: at worst the race
    above, which fails one load that is retried, instead of a service that never starts.
    """
    if cache_dir is None:
        yield
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = open(cache_dir / "compile.lock", "a")  # closed by the with below
    except OSError:  # a cache folder we cannot write: OpenVINO will say so itself
        yield
        return
    with lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.warning(
                        "compile lock %s held for over %.0f s: compiling without it",
                        cache_dir / "compile.lock",
                        LOCK_WAIT_S,
                    )
                    break
                time.sleep(0.05)
        yield  # closing the file releases the lock


def read_version(folder: Path, cache_dir: Path | None, key: str = "") -> Any:
    """The version as an OpenVINO model: read from the cache, or converted and cached.

    Converting the SavedModel took 0.6-4 s for version 6 on this CPU, reading the converted
    model back 0.03-0.06 s: every worker start and reload after the first is that much
    shorter. The cache is keyed by the version's files and OpenVINO's version; a worker
    writes an entry whole and renames it into place, so the others never read half of one.
    """
    if cache_dir is None:
        return convert(folder)
    entry = cache_dir / "converted" / (key or _key(folder))
    xml = entry / "model.xml"
    if xml.is_file():
        try:
            model = core().read_model(str(xml))
            _touch(entry)  # kept by the prune as recently used, not as recently written
            return model
        except Exception as e:  # noqa: BLE001 - a bad entry only costs a conversion
            log.warning(
                "model cache entry unreadable", extra={"entry": str(entry), "error": str(e)}
            )
            shutil.rmtree(entry, ignore_errors=True)  # written again below
    model = convert(folder)
    _store(model, entry)
    if xml.is_file():
        # Compiled from what every later start reads: OpenVINO keys its compiled cache by
        # the graph, and the converter's graph keys differently from the same graph read
        # back, so the first start's networks were never found again (two more compiles,
        # two more blobs, per version).
        with contextlib.suppress(Exception):
            return core().read_model(str(xml))
    return model


def convert(folder: Path) -> Any:
    """``ov.convert_model`` that leaves the root logger as it found it, and sends nothing.

    OpenVINO 2026.4's convert_model sets the root logger's level to ERROR and puts it
    back only when the conversion succeeds: after one broken version, every INFO line of
    the process (model version live, each request) was lost.
    """
    _no_telemetry()
    import openvino as ov

    root = logging.getLogger()
    level, filters, handlers = root.level, list(root.filters), list(root.handlers)
    try:
        return ov.convert_model(str(folder))
    finally:
        root.setLevel(level)
        root.filters[:], root.handlers[:] = filters, handlers


def _no_telemetry() -> None:
    """Keep OpenVINO's converter from sending usage statistics to Google Analytics.

    It does so unless a consent file in $HOME says no: a deployed service must not phone
    home with every model it loads, and the attempt cost 0.8 of the 1.0 s that converting
    version 2 took here (no internet; 0.2 s without it). When ``openvino_telemetry``
    cannot be imported, ``openvino.tools.ovc`` uses its own no-op stub: the import is
    made to fail for this process, before the converter is first imported.
    """
    if "openvino.tools.ovc.convert_impl" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


def _key(folder: Path) -> str:
    import openvino as ov

    h = hashlib.sha256(ov.get_version().encode())
    h.update((folder / "saved_model.pb").read_bytes())
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _store(model: Any, entry: Path) -> None:
    import openvino as ov

    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        os.replace(tmp, entry)  # atomic; if another worker stored it first, theirs stays
        prune_newest(entry.parent, KEEP_CACHED)
    except OSError as e:
        if not entry.is_dir():
            log.warning("model cache not written", extra={"entry": str(entry), "error": str(e)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:  # removed by another worker's prune meanwhile: recompiled next start
        pass


def _mtime(path: Path, missing: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed or renamed by another worker since it was listed
        return missing


def prune_newest(folder: Path, keep: int, stray_blobs: bool = False) -> None:
    """Remove all but the ``keep`` newest subfolders of a cache folder, newest by
    modification time; with ``stray_blobs``, also the compiled blobs lying directly in it
    (where earlier releases had OpenVINO write them); and temporary entries that no worker
    finished. Nothing else is touched. A worker still reading a removed file keeps its open
    copy; the next start recompiles or converts."""
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir()]
        # An entry another worker removes meanwhile sorts as the oldest (already gone).
        entries.sort(key=lambda p: _mtime(p, 0.0), reverse=True)
        strays = list(folder.glob("*.blob")) if stray_blobs else []
        # Entries half written by a worker killed meanwhile (gunicorn's timeout, the OOM
        # killer): a whole model each, never renamed into place, never read. One that a
        # live worker renames into place between the listing and its stat is not stale.
        stale = time.time() - STALE_TMP_SECONDS
        strays += [p for p in folder.glob(".*.tmp") if _mtime(p, math.inf) < stale]
    except OSError:  # no cache folder yet
        return
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for stray in strays:
        # Housekeeping only: a file we may not remove must not refuse the version.
        with contextlib.suppress(OSError):
            if stray.is_dir():
                shutil.rmtree(stray, ignore_errors=True)
            else:
                stray.unlink(missing_ok=True)
