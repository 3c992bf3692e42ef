"""Handing freed heap back to the operating system after a model version loads.

Converting and compiling a version (OpenVINO reads the SavedModel, builds and optimises
its graph) allocates a few hundred MB of short-lived objects. glibc keeps most of what is
freed in its arenas rather than returning it, so a worker that loaded from an empty cache
stayed about 50 MB above one that read the compiled network from the cache, over the
400-MB target. ``malloc_trim`` returns those free pages; it costs milliseconds, once per
load.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def trim() -> bool:
    """Return free heap memory to the OS (glibc's ``malloc_trim(0)``).

    True if memory was released; False where nothing was, or where the C library has no
    ``malloc_trim`` (musl, macOS): there it is a no-op, never an error.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
