"""Fixtures of the trainer's tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT

KilledRun = Callable[[list[str], Path, Path], dict]


@pytest.fixture
def killed_in_stage_2() -> KilledRun:
    """``kill(args, run_dir, log)``: run ``python -m trainer ARGS`` (its output in ``log``),
    SIGKILL it once it has checkpointed a stage-2 epoch in ``run_dir``, and return the
    checkpointed run state: a run to resume."""

    def kill(args: list[str], run_dir: Path, log: Path) -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        with log.open("w") as out:
            cmd = [sys.executable, "-m", "trainer", *args]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        state = run_dir / "checkpoint" / "state.json"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text()).get("stage") == 2:
                break
            time.sleep(0.2)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert alive, log.read_text()
        return json.loads(state.read_text())

    return kill
