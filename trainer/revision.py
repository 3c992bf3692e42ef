"""The git revision of the trainer's code, recorded in run folders and exports.

Kept apart from trainer/export.py so that reading a run folder (trainer/run_folder.py)
loads no TensorFlow.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_revision() -> str:
    """The short commit hash of the trainer's code, ``-dirty`` if trainer/ has uncommitted
    changes; ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
