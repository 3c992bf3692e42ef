"""The property of tests/service/test_properties.py on a real gunicorn: a schemathesis run
against openapi.yaml with negative testing (mutated and invalid requests as well as
valid ones) finds no server error and no answer outside the spec, and no worker dies.

Before a release, run it longer against a served instance (``make serve``):

    .venv/bin/st run http://127.0.0.1:8000/openapi.yaml --url http://127.0.0.1:8000 \
        --mode all --max-examples 500 --exclude-checks positive_data_acceptance
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import gunicorn, log_records, worker_pids

pytestmark = pytest.mark.slow


def _schemathesis() -> str:
    found = Path(sys.executable).parent / "st"
    return str(found) if found.is_file() else shutil.which("st") or pytest.skip("no st")


def test_schemathesis_negative_run_finds_no_server_error(tiny_model, yunet_path, tmp_path):
    with gunicorn(tiny_model.parent, yunet_path, tmp_path / "srv") as (url, proc, log):
        workers = worker_pids(proc.pid)
        run = subprocess.run(
            [
                _schemathesis(),
                "run",
                f"{url}/openapi.yaml",
                "--url",
                url,
                "--mode",
                "all",
                "--max-examples",
                "12",
                "--seed",
                "17",
                "--generation-database",
                "none",
                "--no-color",
                # "Valid data is accepted": bytes that fit `format: binary` are rarely a
                # decodable image, and 400 bad_image is the right answer to them.
                "--exclude-checks",
                "positive_data_acceptance",
                "--request-timeout",
                "30",
            ],
            cwd=tmp_path,  # st leaves a .schemathesis folder behind
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "Test cases" in run.stdout or "passed" in run.stdout, run.stdout[-2000:]
        assert worker_pids(proc.pid) == workers, "a worker died or was replaced"
        assert not [r for r in log_records(log) if r.get("level") == "ERROR"]
    assert "Traceback" not in log.read_text(errors="replace")
