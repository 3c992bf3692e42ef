"""Model versions: the highest complete one is served, newer ones are swapped in after
loading, broken ones are refused while the old one keeps serving."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from service.app import create_app
from service.config import Settings
from service.errors import NotReady
from service.model.registry import ModelSlot
from tests.service.conftest import CheckedClient, FakeDetector, FakeModel


class FolderModel(FakeModel):
    """A fake that 'loads' a version folder: broken when the folder says so."""

    loads = 0

    def __init__(self, folder: Path):
        super().__init__(ready=False)
        self.folder = folder

    def load(self) -> None:
        FolderModel.loads += 1
        meta = json.loads((self.folder / "metadata.json").read_text())
        if meta.get("broken"):
            self.error = f"cannot load {self.folder.name}: broken on purpose"
            return
        self.version = str(meta["version"])
        time.sleep(meta.get("load_seconds", 0))
        self.ready = self.warm = True


def add_version(root: Path, v: int, **meta) -> Path:
    d = root / str(v)
    d.mkdir(parents=True)
    for f in ("saved_model.pb", "labels.json"):
        (d / f).write_text("x")
    (d / "metadata.json").write_text(json.dumps({"version": v, **meta}))
    return d


def test_serves_the_highest_complete_version(tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 3)
    (tmp_path / "7").mkdir()  # incomplete: being copied
    (tmp_path / "7" / "saved_model.pb").write_text("x")
    slot = ModelSlot(tmp_path, FolderModel)
    assert slot.check() and slot.current().version == "3"
    assert not slot.check()  # nothing newer: no reload


def test_a_new_version_is_swapped_in(tmp_path):
    add_version(tmp_path, 1)
    slot = ModelSlot(tmp_path, FolderModel)
    slot.check()
    old = slot.current()
    add_version(tmp_path, 2)
    assert slot.check()
    assert slot.current().version == "2" and old.version == "1"


def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(tmp_path, caplog):
    add_version(tmp_path, 1)
    slot = ModelSlot(tmp_path, FolderModel)
    slot.check()
    bad = add_version(tmp_path, 2, broken=True)
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        assert not slot.check()
    assert slot.current().version == "1"
    refused = [r for r in caplog.records if r.getMessage() == "model version refused"]
    assert len(refused) == 1 and "broken on purpose" in refused[0].error
    assert refused[0].serving.endswith("v1")
    # Not retried while its files are unchanged...
    loads = FolderModel.loads
    assert not slot.check() and FolderModel.loads == loads
    # ...but retried once they change (a fixed copy).
    (bad / "metadata.json").write_text(json.dumps({"version": 2, "fixed": True}))
    assert slot.check() and slot.current().version == "2"


def test_missing_model_folder_means_not_ready_with_the_reason(tmp_path):
    slot = ModelSlot(tmp_path / "nothing", FolderModel)
    assert not slot.check()
    with pytest.raises(NotReady, match="does not exist"):
        slot.current()
    assert "does not exist" in slot.status_error()


def test_requests_keep_being_served_while_a_new_version_loads(tmp_path):
    add_version(tmp_path, 1)
    settings = Settings.from_env({}, model_dir=tmp_path, json_logs=False)
    slot = ModelSlot(tmp_path, FolderModel, reload_seconds=0.05)
    app = create_app(settings, detector=FakeDetector(), models=slot)
    app.test_client_class = CheckedClient
    slot.start()
    client = app.test_client()
    deadline = time.monotonic() + 10
    while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    add_version(tmp_path, 2, load_seconds=0.5)  # a slow load: requests go on meanwhile
    seen: list[list[tuple[int, str]]] = [[] for _ in range(3)]
    stop = threading.Event()

    def hammer(log):
        c = app.test_client()
        while not stop.is_set():
            r = c.get("/v1/models")
            log.append((r.status_code, r.get_json().get("version")))

    threads = [threading.Thread(target=hammer, args=(log,)) for log in seen]
    for t in threads:
        t.start()
    while not all(log and log[-1][1] == "2" for log in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    slot.stop()
    for log in seen:
        assert {status for status, _ in log} == {200}
        versions = [v for _, v in log]
        assert versions[0] == "1" and versions[-1] == "2"
        # Within one client, once the new version answered the old one never did again.
        assert set(versions[versions.index("2") :]) == {"2"}
    assert client.get("/ready").get_json()["version"] == "2"


def test_removing_the_newest_version_rolls_back(tmp_path):
    import shutil

    add_version(tmp_path, 1)
    newest = add_version(tmp_path, 2)
    slot = ModelSlot(tmp_path, FolderModel)
    slot.check()
    assert slot.current().version == "2"
    shutil.rmtree(newest)
    assert slot.check() and slot.current().version == "1"


def test_every_load_hands_the_freed_heap_back(tmp_path, monkeypatch):
    from service.model import registry

    trims: list[int] = []
    monkeypatch.setattr(registry.memory, "trim", lambda: trims.append(1) or True)
    add_version(tmp_path, 1)
    slot = ModelSlot(tmp_path, FolderModel)
    assert slot.check() and len(trims) == 1
    add_version(tmp_path, 2, broken=True)  # a refused version's garbage as well
    assert not slot.check() and len(trims) == 2


def test_trim_returns_freed_pages_to_the_os():
    import platform

    from service.model import memory

    if platform.libc_ver()[0] != "glibc":  # musl and macOS have no malloc_trim
        pytest.skip("malloc_trim is glibc's")

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024

    # Many small blocks (below glibc's mmap threshold), freed: they stay in the heap.
    blocks = [bytearray(1000) for _ in range(200_000)]
    above = [bytearray(1000) for _ in range(10)]  # keeps glibc from shrinking the heap itself
    held = rss_mb()
    del blocks
    assert rss_mb() > held - 50  # freed, but still held by the process
    memory.trim()
    assert rss_mb() < held - 100
    del above
