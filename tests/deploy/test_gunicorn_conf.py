"""gunicorn's settings as service/gunicorn_conf.py derives them from FER_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CODE = (
    "import json, runpy; ns = runpy.run_path('service/gunicorn_conf.py'); "
    "print(json.dumps({k: ns[k] for k in ('worker_class', 'threads', 'workers')}))"
)


def _settings(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CODE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "worker_class,threads,expected",
    [("sync", "4", 1), ("sync", "1", 1), ("gthread", "4", 4), ("gthread", "8", 8)],
)
def test_threads_only_with_gthread(worker_class, threads, expected):
    # gunicorn turns a sync worker with threads > 1 into gthread without a word: the
    # default (sync, FER_THREADS=4) ran gthread workers of 4 threads.
    got = _settings(FER_WORKER_CLASS=worker_class, FER_THREADS=threads, FER_WORKERS="3")
    assert got == {"worker_class": worker_class, "threads": expected, "workers": 3}
