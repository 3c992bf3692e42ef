"""The live model of a worker and its zero-downtime replacement by newer versions.

``models/<name>/`` holds numbered versions (TF Serving layout, service.model.repository). A
worker serves the highest complete one; when a higher one appears (checked every
``reload_seconds``, or at once on SIGHUP) a classifier is built for that folder, loaded
and warmed beside the live model, then swapped in with one reference assignment.
Requests take a snapshot of the live model when they start, so a request never mixes two
versions and none fails during a switch. A version that fails to load (its contract
files malformed, or its SavedModel) is refused with a log line and not tried again until
its files change; the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from service import metrics
from service.config import Settings
from service.errors import NotReady
from service.model import memory, repository
from service.model.classifier import Classifier
from service.model.runtime import classifier_factory

log = logging.getLogger("service.registry")


def _fingerprint(folder: Path) -> tuple:
    """Changes when any file of the version folder is added, replaced or grows."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


class ModelSlot:
    """Holds the live classifier; loads newer versions in the background and swaps them in."""

    def __init__(
        self,
        model_dir: Path,
        factory: Callable[[Path], Classifier],
        reload_seconds: float = 0.0,
    ):
        self.model_dir = Path(model_dir)
        self.factory = factory
        self.reload_seconds = reload_seconds
        self._live: Classifier | None = None
        self._refused: dict[Path, tuple] = {}
        self.error: str | None = None
        self._lock = threading.Lock()  # one check/load at a time
        self._wake = threading.Event()
        self._stop = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, threads: int | None = None) -> ModelSlot:
        """A slot on the configured model folder and runtime, empty until checked or started.

        Args:
            settings: the service's settings.
            threads: OpenVINO's inference threads (0: its own choice); by default a
                worker's share of the cores (``Settings.threads_per_worker``).
        """
        factory = classifier_factory(
            settings.runtime,
            settings.precision,
            settings.threads_per_worker() if threads is None else threads,
            settings.flip_tta,
            Path(settings.cache_dir) if settings.cache_dir else None,
            settings.calibration,
        )
        return cls(settings.model_dir, factory, settings.reload_seconds)

    @classmethod
    def fixed(cls, model: Classifier) -> ModelSlot:
        """A slot around one already-built classifier (tests, or no reloading)."""
        slot = cls(Path("."), lambda _: model)
        slot._live = model
        return slot

    # --- what requests use -------------------------------------------------------------
    def current(self) -> Classifier:
        """The live model, for the whole of one request; NotReady while there is none."""
        model = self._live
        if model is None or not model.ready:
            raise NotReady(self.status_error() or "the model is still loading")
        return model

    def peek(self) -> Classifier | None:
        return self._live

    def status_error(self) -> str | None:
        live = self._live
        if live is not None and live.error:
            return live.error
        return self.error

    def has_version(self, version: str) -> bool:
        """``version`` is a complete version folder of the model, served or not."""
        return repository.has_version(self.model_dir, version)

    # --- loading -----------------------------------------------------------------------
    def check(self) -> bool:
        """Load the highest complete version if it is not the live one; True if swapped."""
        with self._lock:
            try:
                folder = repository.resolve_version(self.model_dir)
            except FileNotFoundError as e:
                if self._live is None and self.error != str(e):  # log a new problem once
                    self.error = str(e)
                    log.error("no model to serve", extra={"error": self.error})
                return False
            live = self._live
            if live is not None and live.folder == folder:
                return False
            fp = _fingerprint(folder)
            if self._refused.get(folder) == fp:
                return False
            return self._load(folder, fp)

    def _load(self, folder: Path, fp: tuple) -> bool:
        t0 = time.monotonic()
        model = self.factory(folder)  # a classifier of this folder only
        model.load()  # never raises: a failure (a malformed contract too) leaves error set
        memory.trim()  # the conversion's garbage, kept by glibc otherwise (service/model/memory.py)
        old = self._live
        if not model.ready:
            self._refused[folder] = fp
            self.error = model.error or "the model did not load"
            metrics.RELOADS.labels("refused").inc()
            log.error(
                "model version refused",
                extra={
                    "folder": str(folder),
                    "error": self.error,
                    "serving": f"{old.name} v{old.version}" if old else None,
                },
            )
            return False
        self._live, self.error = model, None  # the swap: one reference assignment
        metrics.RELOADS.labels("loaded").inc()
        if old is not None:
            metrics.set_model(old.name, old.version, old.runtime, old.precision, False)
        metrics.set_model(model.name, model.version, model.runtime, model.precision, True)
        log.info(
            "model version live",
            extra={
                "model": model.name,
                "version": model.version,
                "runtime": model.runtime,
                "precision": model.precision,
                "previous": old.version if old else None,
                "seconds": round(time.monotonic() - t0, 2),
            },
        )
        return True

    # --- background watcher ------------------------------------------------------------
    def start(self) -> None:
        """Load now and then watch for new versions, in a daemon thread."""
        if self._live is None:
            metrics.MODEL_READY.set(0)  # "not ready" is a value the alert rules can see
        threading.Thread(target=self._run, name="model-watcher", daemon=True).start()

    def wake(self) -> None:
        """Check for a new version now (the SIGHUP handler calls this)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad check
                log.exception("model check failed")
            if self._live is not None and self.reload_seconds <= 0:
                # No polling: only a SIGHUP (wake) brings a new check.
                self._wake.wait()
            else:
                # Poll; until a model loads, retry at most every reload_seconds (or 30 s).
                self._wake.wait(self.reload_seconds if self.reload_seconds > 0 else 30)
            self._wake.clear()
