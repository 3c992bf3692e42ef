"""Offline checks of everything an operator deploys: compose files, Dockerfile,
Prometheus config and alert rules, Grafana dashboard, Kubernetes manifests."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, need_tool

DEPLOY = ROOT / "deploy"
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cpu.yml"]
PROFILES = [[], ["train"], ["grafana"], ["train", "grafana"]]


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def compose_config(file: str, profiles: list[str]) -> dict:
    exe = need_tool("docker-compose")
    args = [a for p in profiles for a in ("--profile", p)]
    check = run(exe, "-f", file, *args, "config", "-q")
    assert check.returncode == 0, check.stderr
    out = run(exe, "-f", file, *args, "config")
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "default")
@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_compose_file_is_valid(file, profiles):
    compose_config(file, profiles)


def test_every_variable_of_env_example_reaches_compose():
    # .env.example is what an operator edits for docker compose: a variable the compose
    # files neither pass to the api nor use themselves would silently do nothing.
    names = re.findall(r"^(FER_\w+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    text = (ROOT / "compose.common.yml").read_text()
    api = yaml.safe_load(text)["services"]["api"]["environment"]
    assert len(names) > 20
    missing = [n for n in names if n not in api and "${" + n not in text]
    assert not missing, f".env.example sets variables compose ignores: {missing}"


def test_gpu_compose_reserves_gpus_and_cpu_compose_does_not():
    gpu = compose_config("docker-compose.yml", ["train", "grafana"])["services"]
    cpu = compose_config("docker-compose.cpu.yml", ["train", "grafana"])["services"]
    for name in ("api", "trainer"):
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        assert "deploy" not in cpu[name]
        assert cpu[name]["build"]["args"]["EXTRAS"] == "cpu"
        assert gpu[name]["build"]["args"]["EXTRAS"] == "gpu"
    assert gpu["trainer"]["profiles"] == ["train"] and gpu["grafana"]["profiles"] == ["grafana"]
    api = gpu["api"]
    assert "./models:/app/models:ro" in [v.replace(str(ROOT), ".") for v in api["volumes"]]
    # /ready on FER_BIND's port, as the image's own HEALTHCHECK does.
    assert api["healthcheck"]["test"] == ["CMD", "python", "-m", "service.healthcheck"]
    assert _seconds(api["stop_grace_period"]) > 30  # gunicorn's graceful_timeout
    assert _seconds(api["healthcheck"]["start_period"]) >= 60
    assert api["restart"] == "unless-stopped"
    # Clients reach the api through nginx (slow clients), Prometheus reaches it directly.
    assert "ports" not in api
    assert gpu["proxy"]["ports"] == [{"published": 8000, "target": 8000}]
    nginx_conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert "server api:8000;" in nginx_conf


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert m, value
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def test_dockerfile_passes_hadolint_and_runs_gunicorn_as_pid_1():
    exe = need_tool("hadolint")
    res = run(exe, "Dockerfile.gpu")
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "Dockerfile.gpu").read_text()
    assert 'ENTRYPOINT ["gunicorn", "-c", "service/gunicorn_conf.py"]' in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert 'CMD ["python", "-m", "service.healthcheck"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", "runs", "tests", ".git"):
        assert any(path in line for line in ignored), path


def test_prometheus_config_and_rules_pass_promtool():
    exe = need_tool("promtool")
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ):
        res = run(exe, *args, cwd=DEPLOY / "prometheus")
        assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_catches_a_broken_rule(tmp_path):
    # The rule tests above must be able to fail: a rule with a syntax error is refused.
    exe = need_tool("promtool")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules["groups"][0]["rules"][0]["expr"] = "up{job=="
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(rules))
    assert run(exe, "check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


def exported_metric_names() -> set[str]:
    """Every sample name the service's /metrics can show (histogram series included)."""
    from prometheus_client import REGISTRY

    import service.metrics  # noqa: F401  (registers the fer_* metrics)

    names = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("fer_"):
            continue
        base = family.name + ("_total" if family.type == "counter" else "")
        names.add(base)
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
    return names


PROMQL_WORDS = {
    "sum", "rate", "histogram_quantile", "max", "min", "avg", "increase", "count",
    "and", "or", "unless",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # label lists
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("$")}


def test_grafana_dashboard_queries_name_exported_metrics():
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "fer.json").read_text())
    exported = exported_metric_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        names = metric_names_in(expr)
        assert names, expr
        assert names <= exported | {"up"}, (expr, names - exported)
        used |= names
    # The panels the issue asks for: requests, latency, per-stage time, faces, emotions,
    # errors; and which detector runs (OpenVINO or OpenCV's 2-3x slower DNN).
    for metric in (
        "fer_http_requests_total",
        "fer_http_request_duration_seconds_bucket",
        "fer_stage_duration_seconds_bucket",
        "fer_faces_per_image_sum",
        "fer_predictions_total",
        "fer_errors_total",
        "fer_detector_info",
        "fer_uncertain_predictions_total",  # traffic drifting from what the model knows
    ):
        assert metric in used, metric
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in ds["datasources"]}
    assert {p["datasource"]["uid"] for p in dash["panels"]} <= uids


def test_alert_rules_name_exported_metrics():
    exported = exported_metric_names()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        assert metric_names_in(rule["expr"]) <= exported | {"up"}, rule["alert"]


def k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if f.name != "kustomization.yaml":
            docs += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


K8S_VERSION = "1.33.0"


def test_kubernetes_manifests_match_the_schemas():
    kv = pytest.importorskip("kubernetes_validate")
    docs = k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    } <= kinds
    for name, doc in docs:
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            pytest.fail(f"{name} {doc['kind']}: {e}")
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {f for f, _ in docs} - {"trainer-job.yaml"}


def test_kubernetes_validation_can_fail():
    kv = pytest.importorskip("kubernetes_validate")
    deployment = copy.deepcopy(next(d for _, d in k8s_docs() if d["kind"] == "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")  # a typo strict mode must catch
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)


def test_kubernetes_api_pod_has_gpu_probes_and_scrape_annotations():
    docs = dict((d["kind"], d) for _, d in k8s_docs())
    pod = docs["Deployment"]["spec"]["template"]
    api = pod["spec"]["containers"][0]
    assert api["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert api["resources"]["requests"]["cpu"] and api["resources"]["requests"]["memory"]
    assert api["startupProbe"]["httpGet"]["path"] == "/ready"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    # Liveness on /health: a worker busy reloading a model must not be killed.
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30
    assert docs["PodDisruptionBudget"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["resources"]["limits"]["nvidia.com/gpu"] == 1
