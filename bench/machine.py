"""The machine a benchmark ran on, for its header: figures depend on the CPU more than on
anything else (OpenVINO computes bf16 only where the CPU does: AVX512_BF16 or AMX)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags that decide what the service's runtimes can do, as /proc/cpuinfo names them.
FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX"}


def cpu() -> dict:
    """CPU model, the cores this process may use, and which of FLAGS it has."""
    model, flags = platform.processor() or "unknown CPU", set()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {
        "model": model,
        "cores": len(os.sched_getaffinity(0)),
        "flags": {name: flag in flags for flag, name in FLAGS.items()},
    }


def header(precision: str | None = None) -> str:
    """One line: the CPU, its cores, the flags it has and lacks, and the precision in use."""
    c = cpu()
    has = ", ".join(n for n, v in c["flags"].items() if v) or "none of them"
    lacks = ", ".join(n for n, v in c["flags"].items() if not v)
    line = f"CPU: {c['model']}, {c['cores']} cores; {has}" + (f"; no {lacks}" if lacks else "")
    return line + (f"; precision {precision}" if precision else "")
