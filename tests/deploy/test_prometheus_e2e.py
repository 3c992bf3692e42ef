"""A real Prometheus (Debian's) scraping a real gunicorn with the repo's scrape config and
alert rules: the request and stage metrics arrive and the rules load."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests
import yaml

from tests.conftest import jpeg_bytes, need_tool
from tests.deploy.test_deploy_files import DEPLOY
from tests.server import free_port, gunicorn

pytestmark = pytest.mark.slow


def query(prom: str, q: str) -> list:
    r = requests.get(prom + "/api/v1/query", params={"query": q}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def wait_for(prom: str, q: str, seconds: float = 60) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = query(prom, q)
            if result:
                return result
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise AssertionError(f"Prometheus never returned {q!r}")


def test_prometheus_scrapes_requests_and_stages(tiny_model, yunet_path, astronaut, tmp_path):
    exe = need_tool("prometheus")
    conf = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    conf["global"].update(scrape_interval="1s", evaluation_interval="1s")
    with gunicorn(tiny_model.parent, yunet_path, tmp_path / "srv") as (url, _, _):
        # The repo's config, pointed at this server instead of the compose service name.
        conf["scrape_configs"][0]["static_configs"][0]["targets"] = [url.split("//")[1]]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(conf))
        port = free_port()
        prom = f"http://127.0.0.1:{port}"
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(5):
                r = requests.post(
                    url + "/predict",
                    data=jpeg_bytes(astronaut),
                    headers={"Content-Type": "image/jpeg"},
                    timeout=30,
                )
                assert r.status_code == 200
            junk = requests.post(
                url + "/predict", data=b"junk", headers={"Content-Type": "image/jpeg"}, timeout=10
            )
            assert junk.status_code == 400 and junk.json()["error"]["code"] == "bad_image"
            up = wait_for(prom, 'up{job="fer-api"} == 1')
            assert up[0]["metric"]["instance"] == url.split("//")[1]
            ok = wait_for(prom, 'fer_http_requests_total{endpoint="/predict",status="200"} >= 5')
            assert float(ok[0]["value"][1]) == 5
            wait_for(prom, 'fer_errors_total{code="bad_image"} >= 1')
            stages = wait_for(prom, "fer_stage_duration_seconds_count")
            assert {s["metric"]["stage"] for s in stages} >= {
                "decode",
                "detect",
                "crop",
                "classify",
            }
            assert wait_for(prom, "fer_model_ready == 1")
            assert wait_for(prom, 'fer_predictions_total{emotion=~".+"}')
            rules = requests.get(prom + "/api/v1/rules", timeout=5).json()["data"]["groups"]
            alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
            assert alerts == {
                "FerModelVersionRefused",
                "FerApiDown",
                "FerModelNotReady",
                "FerHighErrorRate",
                "FerManyUncertainAnswers",
                "FerHighLatencyP95",
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
