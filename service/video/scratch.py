"""Where a video upload waits while it is analysed: OpenCV's FFmpeg reads files, not bytes.

Each process writes into its own folder, ``<root>/<pid>``. The file is unlinked as soon as
OpenCV has opened it (the open descriptor keeps it readable, and the kernel frees it when
the capture is released), so it is on disk by name only while it is written and opened,
and every request removes its own file whatever happens. What a killed worker left there
is removed when a process starts (``sweep``): its own stale folder, and the folder of any
process that no longer runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from service.config import Settings
from service.errors import PayloadTooLarge

log = logging.getLogger("service.video")


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / "fer-video"


class Scratch:
    """The process's folder for uploads under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.pid = os.getpid()

    @classmethod
    def from_settings(cls, settings: Settings) -> Scratch:
        """Under FER_VIDEO_TMP_DIR, or the system's temporary folder when it is unset."""
        return cls(Path(settings.video_tmp_dir) if settings.video_tmp_dir else default_root())

    @property
    def folder(self) -> Path:
        # A forked process has its own folder even if it inherited this object.
        self.pid = os.getpid()
        return self.root / str(self.pid)

    def sweep(self) -> list[Path]:
        """Remove this process's stale folder and those of processes that are gone."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for d in self.root.iterdir():
            if d.is_dir() and d.name.isdigit() and not _alive(int(d.name), os.getpid()):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        if removed:
            log.info("removed stale video uploads", extra={"folders": [str(d) for d in removed]})
        return removed

    @contextlib.contextmanager
    def file(self, chunks: Iterable[bytes], limit: int, suffix: str = ".video") -> Iterator[Path]:
        """The chunks written to a new file (PayloadTooLarge past ``limit`` bytes), removed
        when the block ends, however it ends."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_private(folder)
        fd, name = tempfile.mkstemp(suffix=suffix, dir=folder)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                size = 0
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"the video is larger than the limit of {limit / 2**20:g} MB"
                        )
                    out.write(chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)


def _check_private(folder: Path) -> None:
    """Refuse a folder another local user could have made or could write: the default
    root is in the shared /tmp, and the file is checked by path and then reopened by
    FFmpeg by path, so a folder (or symlink) planted there could swap it in between."""
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError(
            f"video upload folder {folder} is not a private folder of this user "
            "(a symlink, someone else's, or writable by others): set FER_VIDEO_TMP_DIR"
        )


def _alive(pid: int, me: int) -> bool:
    """Whether another running process has this id (our own id's folder is stale)."""
    if pid == me:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
