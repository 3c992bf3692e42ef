"""A short, bounded fuzzing run of the decoding path, and replays of past findings."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fuzz.fuzz_decode import check, seed

# Inputs a fuzzing run found to break the property, kept so they stay fixed:
# spider-stkoffset-attributeerror.bin (a SPIDER header on which Pillow's plugin raised
# AttributeError, a 500; found by this test in a CI run, 30 s of fuzzing).
REGRESSIONS = Path(__file__).parent / "regressions"


def test_seeds_and_past_findings_hold_the_property(tmp_path):
    seed(tmp_path)
    files = sorted(tmp_path.iterdir()) + sorted(REGRESSIONS.glob("[!.]*"))
    assert len(files) >= 10
    for path in files:
        check(path.read_bytes())


@pytest.mark.slow
def test_short_fuzzing_run_finds_nothing(tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.fuzz_decode",
            str(corpus),
            "-max_total_time=30",
            "-max_len=4096",
            "-timeout=10",
            "-rss_limit_mb=4096",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    # A finding (crash-, timeout-, oom-, leak-*: at most -max_len bytes) goes into the
    # failure message in base64, so a failure in CI can be replayed and kept in
    # regressions/ even though tmp_path is gone.
    found = [p for p in tmp_path.glob("*-*") if p.is_file()]
    tail = res.stderr[-3000:] + "".join(
        f"\n{p.name}: {base64.b64encode(p.read_bytes()).decode()}" for p in found
    )
    assert res.returncode == 0, tail
    assert "Done" in tail and "INITED" in res.stderr, tail
    assert not found, tail
