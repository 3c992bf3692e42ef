"""The images, built from Dockerfile.gpu and run in a real Docker engine: the api container
as `docker run`, a Kubernetes pod and compose run it, and the trainer container writing a
model version that the running api switches to by itself.

Needs a Docker engine (deploy/ci/engine.sh starts Debian's) and the base images
(deploy/ci/base-images.sh makes stand-ins where Docker Hub is not reachable). Without them
the tests skip, except where FER_REQUIRE_DOCKER=1 (.ci/run) makes that a failure. Builds
use the legacy builder (Debian has no buildx) and the layer cache. Containers use the
host's network on 127.0.0.1 ports, or the network compose creates for its own project.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, TINY_ARGS, jpeg_bytes, need_tool, write_dataset
from tests.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# The names docker-compose.cpu.yml gives the CPU images.
IMAGES = {"api": "fer-api:cpu", "trainer": "fer-trainer:cpu"}
BASE_IMAGES = ["python:3.11-slim", "nginx:1.27-alpine", "prom/prometheus:v3.5.0"]
K8S = ROOT / "deploy" / "kubernetes"
# The manifests' image names (kustomization.yaml points them at a registry).
K8S_IMAGES = {"fer-api": IMAGES["api"], "fer-trainer": IMAGES["trainer"]}
# Model load and warm-up: about 20 s on 2 idle cores, several times that on busy ones.
READY_SECONDS = 300
REPO_VERSIONS = sorted(
    int(p.name) for p in (ROOT / "models" / "emotion").iterdir() if p.name.isdigit()
)


def _unavailable(reason: str):
    if os.environ.get("FER_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason}; required here (FER_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def engine() -> None:
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        _unavailable("no docker client")
    if info.returncode != 0:
        _unavailable("no Docker engine answers (deploy/ci/engine.sh starts one)")
    missing = [i for i in BASE_IMAGES if docker("image", "inspect", i, check=False).returncode]
    if missing:
        _unavailable(f"base images missing: {missing} (deploy/ci/base-images.sh makes them)")


@contextlib.contextmanager
def file_server(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (what a build fetches instead of GitHub)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def build(target: str, log: Path, say, **build_args: str) -> None:
    """``docker build --target`` the users' Dockerfile, tagged as compose names it."""
    cmd = ["docker", "build", "--network=host", "-f", "Dockerfile.gpu", "--target", target]
    cmd += [f"--build-arg={k}={v}" for k, v in build_args.items()]
    cmd += ["-t", IMAGES[target], "."]
    start = time.monotonic()
    with log.open("w") as out:
        res = subprocess.run(
            cmd,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            timeout=1800,
        )
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {res.returncode}:\n{tail(log.read_text())}")
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGES[target]).stdout)
    say(f"built {IMAGES[target]} in {time.monotonic() - start:.0f} s: {size / 1e9:.2f} GB")


@pytest.fixture(scope="module")
def images(engine, yunet_path, tmp_path_factory, pytestconfig) -> dict[str, str]:
    """Both CPU images, built from the working tree (the layer cache makes reruns quick)."""
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:  # build times and sizes, in the run's output
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", end="")

    logs = tmp_path_factory.mktemp("builds")
    with file_server(yunet_path.parent) as url:
        build("api", logs / "api.log", say, EXTRAS="cpu", YUNET_URL=f"{url}/{yunet_path.name}")
    # The trainer as the compose files build it: no YUNET_URL, and no server to fetch
    # from. The legacy builder runs the api stage for it too, which must fetch nothing.
    build("trainer", logs / "trainer.log", say, EXTRAS="cpu", YUNET_URL="")
    assert "YUNET_URL is empty: no detector downloaded" in (logs / "trainer.log").read_text()
    return IMAGES


# Lines that say something went wrong: gunicorn's own ([WARNING], [ERROR], ...), the
# service's JSON lines at WARNING and above, tracebacks and OS errors.
PROBLEM = re.compile(
    r'\[(WARNING|ERROR|CRITICAL)\]|"level": "(WARNING|ERROR|CRITICAL)"|Traceback|\[Errno'
)


class Container:
    def __init__(self, name: str):
        self.name = name

    def logs(self) -> str:
        res = docker("logs", self.name, check=False)
        return res.stdout + res.stderr

    def problems(self) -> list[str]:
        return [line for line in self.logs().splitlines() if PROBLEM.search(line)]

    def inspect(self, template: str):
        return json.loads(docker("inspect", "-f", f"{{{{json {template}}}}}", self.name).stdout)

    def records(self, message: str) -> list[dict]:
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("message") == message:
                    out.append(rec)
        return out

    def wait(self, cond, what: str, seconds: float = READY_SECONDS):
        """Poll ``cond`` until it returns something true; fail early if the container
        stops, and with its log if time runs out."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if value := cond():
                    return value
            except (requests.ConnectionError, requests.Timeout):
                pass
            if not self.inspect(".State.Running"):
                pytest.fail(f"{self.name} exited while waiting for {what}:\n{tail(self.logs())}")
            time.sleep(1)
        pytest.fail(f"{self.name}: no {what} after {seconds} s:\n{tail(self.logs())}")

    def wait_ready(self, url: str) -> None:
        self.wait(lambda: requests.get(url + "/ready", timeout=3).status_code == 200, "/ready")

    def wait_every_worker(self, workers: int, version: str) -> None:
        """Every worker's latest "model version live" line names ``version``: one 200 from
        /ready says nothing of the other workers."""

        def live():
            latest = {r["pid"]: r["version"] for r in self.records("model version live")}
            return len(latest) == workers and set(latest.values()) == {version}

        self.wait(live, f"version {version} live in {workers} workers")


@contextlib.contextmanager
def container(role: str, *run_args: str):
    """``docker run -d`` with a name of its own; removed on exit, whatever happened."""
    name = f"fer-test-{role}-{os.getpid()}"
    docker("rm", "-f", name, check=False)
    docker("run", "-d", f"--name={name}", *run_args)
    try:
        yield Container(name)
    finally:
        docker("rm", "-f", "-v", name, check=False, timeout=120)


def predict(url: str, image, **headers: str) -> requests.Response:
    return requests.post(
        url + "/predict",
        data=jpeg_bytes(image),
        headers={"Content-Type": "image/jpeg", **headers},
        timeout=60,
    )


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus exposition text; 0 when absent."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_api_container_is_healthy_serves_and_stops_on_sigterm(images, astronaut):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Another port than the image's 8000: Docker's health status must follow FER_BIND.
    assert port != 8000
    with container("api", "--network=host", f"--env=FER_BIND=127.0.0.1:{port}", IMAGES["api"]) as c:
        c.wait_ready(url)
        assert "gunicorn" in docker("exec", c.name, "cat", "/proc/1/cmdline").stdout
        # The image's own HEALTHCHECK (every 15 s) runs python -m service.healthcheck.
        c.wait(lambda: c.inspect(".State.Health.Status") == "healthy", "healthy", 60)
        r = predict(url, astronaut)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [f["emotion"] for f in body["faces"]] == ["happy"]
        assert body["detector"] == "yunet" and body["model"]["version"] == str(REPO_VERSIONS[-1])
        text = requests.get(url + "/metrics", timeout=10).text
        labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
        assert sample(text, "fer_http_requests_total", **labels) == 1
        assert sample(text, "fer_model_ready") == 1
        # /docs: Swagger UI from the image's own swagger-ui-py, over its own openapi.yaml.
        assert "swagger-ui-bundle.js" in requests.get(url + "/docs", timeout=5).text
        for path in ("/docs/swagger-ui-bundle.js", "/openapi.yaml"):
            assert requests.get(url + path, timeout=5).status_code == 200, path

        # docker stop: SIGTERM, then SIGKILL after the grace period (compose's 45 s).
        start = time.monotonic()
        docker("stop", "--time=45", c.name, timeout=90)
        took = time.monotonic() - start
        state = c.inspect(".State")
        logs = c.logs()
        assert state["ExitCode"] == 0 and not state["OOMKilled"], tail(logs)
        assert took < 30, f"stop took {took:.1f} s"  # gunicorn's graceful_timeout
        assert "Handling signal: term" in logs and "Shutting down: Master" in logs
        assert not c.problems(), c.problems()


def _k8s(kind: str, file: str) -> dict:
    return next(d for d in yaml.safe_load_all((K8S / file).read_text()) if d["kind"] == kind)


def _size(limit: str) -> str:
    """A Kubernetes quantity (256Mi, 1Gi) as a tmpfs size option (256m, 1g)."""
    m = re.fullmatch(r"(\d+)([MG])i", limit)
    assert m, limit
    return m.group(1) + m.group(2).lower()


def _own(folder: Path, uid: int, gid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chown(folder, uid, gid)
    except PermissionError:  # not root: let any uid write, as an emptyDir does
        folder.chmod(0o777)
    return folder


@pytest.fixture(scope="module")
def pod(images, tmp_path_factory):
    """The api container as deploy/kubernetes/api.yaml runs it: its user, read-only root,
    dropped capabilities, the ConfigMap's settings and its volumes (the models volume a
    host folder that the init container seeds; emptyDirs as tmpfs). Yields (container,
    url, models folder, "uid:gid", workers)."""
    spec = _k8s("Deployment", "api.yaml")["spec"]["template"]["spec"]
    settings = _k8s("ConfigMap", "configmap.yaml")["data"]
    sec = spec["securityContext"]
    uid, gid = sec["runAsUser"], sec["runAsGroup"]
    user = f"{uid}:{gid}"
    work = tmp_path_factory.mktemp("pod")
    mounts = {}
    for v in spec["volumes"]:
        if "persistentVolumeClaim" in v:
            mounts[v["name"]] = f"--volume={_own(work / v['name'], uid, sec['fsGroup'])}:{{}}"
        else:
            size = _size(v["emptyDir"]["sizeLimit"])
            mounts[v["name"]] = f"--tmpfs={{}}:rw,exec,mode=1777,size={size}"

    def volume_args(c: dict) -> list[str]:
        return [
            mounts[m["name"]].format(m["mountPath"] + (":ro" if m.get("readOnly") else ""))
            for m in c["volumeMounts"]
        ]

    init = spec["initContainers"][0]
    seed = docker(
        "run", "--rm", f"--user={user}", *volume_args(init),
        f"--entrypoint={init['command'][0]}", K8S_IMAGES[init["image"]],
        *init["command"][1:],
    )  # fmt: skip
    assert seed.returncode == 0
    models = work / "models"
    assert sorted(int(p.name) for p in (models / "emotion").iterdir()) == REPO_VERSIONS

    api = spec["containers"][0]
    csec = api["securityContext"]
    assert csec == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }, "the pod's security settings changed: mirror them below"
    port = free_port()
    env = {
        **settings,
        # Host networking: the port is free on this machine, not the manifest's 8000.
        "FER_BIND": f"127.0.0.1:{port}",
        # The manifest polls every 30 s; the trainer test below need not wait that long.
        "FER_RELOAD_SECONDS": "3",
    }
    args = ["--network=host", f"--user={user}", "--read-only", "--cap-drop=ALL"]
    args += ["--security-opt=no-new-privileges", *volume_args(api)]
    args += [f"--env={k}={v}" for k, v in env.items()]
    with container("pod", *args, K8S_IMAGES[api["image"]]) as c:
        url = f"http://127.0.0.1:{port}"
        c.wait_ready(url)
        yield c, url, models, user, int(settings["FER_WORKERS"])


def test_api_runs_under_the_kubernetes_pod_settings_without_warnings(pod, astronaut):
    c, url, models, _, workers = pod
    host = c.inspect(".HostConfig")
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    c.wait_every_worker(workers, str(REPO_VERSIONS[-1]))
    r = predict(url, astronaut)
    assert r.status_code == 200 and len(r.json()["faces"]) == 1, r.text
    assert requests.get(url + "/health", timeout=5).status_code == 200
    # OpenVINO's converted and compiled model went to the cache volume (FER_CACHE_DIR).
    cached = docker("exec", c.name, "find", "/var/cache/fer", "-type", "f").stdout.split()
    assert cached, "nothing written to the cache volume"
    assert not c.problems(), c.problems()


def test_trainer_container_exports_a_version_the_running_api_switches_to(pod, astronaut, tmp_path):
    c, url, models, user, workers = pod
    uid, gid = (int(x) for x in user.split(":"))
    data = write_dataset(tmp_path / "data", {"train": 16, "test": 4})
    for d in [data, *(p for p in data.rglob("*") if p.is_dir())]:
        d.chmod(0o755)
    runs = _own(tmp_path / "runs", uid, gid)
    # As docs/deployment.md's compose workflow runs it (`run --rm trainer train /data ...`), as the
    # pod's user, with no network at all: nothing is downloaded.
    start = time.monotonic()
    res = subprocess.run(
        [
            "docker", "run", "--rm", "--network=none", f"--user={user}",
            f"--volume={data}:/data:ro", f"--volume={models}:/app/models",
            f"--volume={runs}:/app/runs", IMAGES["trainer"],
            "train", "/data", *TINY_ARGS, "--run-dir", "/app/runs/tiny",
        ],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, tail(res.stdout + res.stderr)
    new = models / "emotion" / str(REPO_VERSIONS[-1] + 1)
    assert (new / "metadata.json").is_file(), sorted(p.name for p in new.parent.iterdir())
    assert {p.stat().st_uid for p in new.rglob("*")} == {uid}
    trained = time.monotonic()

    c.wait_every_worker(workers, new.name)
    switched = time.monotonic() - trained
    r = predict(url, astronaut)
    assert r.status_code == 200 and r.json()["model"]["version"] == new.name, r.text
    assert requests.get(url + "/ready", timeout=5).json()["version"] == new.name
    assert not c.problems(), c.problems()
    print(f"trained in {trained - start:.0f} s, every worker switched {switched:.0f} s later")


def test_compose_cpu_stack_serves_through_nginx_and_prometheus_scrapes_it(images, astronaut):
    exe = need_tool("docker-compose")
    proxy_port, prom_port = free_port(), free_port()
    compose = [exe, "-p", f"fer-test-{os.getpid()}", "-f", "docker-compose.cpu.yml"]
    env = {
        **os.environ,
        "FER_PROXY_PORT": str(proxy_port),
        "FER_PROMETHEUS_PORT": str(prom_port),
    }

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*compose, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )

    up = run("up", "-d", "--no-build")
    try:
        assert up.returncode == 0, up.stderr
        api = Container(run("ps", "-q", "api").stdout.strip())
        url = f"http://127.0.0.1:{proxy_port}"
        early = set()  # what nginx answered before the api was ready

        def ready_through_nginx():
            r = requests.get(url + "/ready", timeout=5)
            if r.status_code != 200:
                early.add((r.status_code, r.headers.get("Content-Type")))
            return r.status_code == 200

        api.wait(ready_through_nginx, "/ready through nginx")
        api.wait_every_worker(int(env.get("FER_WORKERS", "2")), str(REPO_VERSIONS[-1]))
        # Before that: the api's own 503 (loading) or nginx's JSON 503 (not up yet).
        assert early <= {(503, "application/json")}, early
        r = predict(url, astronaut, **{"X-Request-ID": "compose-smoke-1"})
        assert r.status_code == 200 and len(r.json()["faces"]) == 1, r.text
        assert r.headers["X-Request-ID"] == "compose-smoke-1"
        big = requests.post(url + "/predict", data=b"\0" * (33 << 20), timeout=60)
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "payload_too_large"

        prom = f"http://127.0.0.1:{prom_port}/api/v1"

        def query(q: str) -> list:
            r = requests.get(prom + "/query", params={"query": q}, timeout=5)
            return r.json()["data"]["result"]

        up_series = api.wait(lambda: query('up{job="fer-api"} == 1'), "the scrape target up", 90)
        assert up_series[0]["metric"]["instance"] == "api:8000"
        api.wait(
            lambda: query('fer_http_requests_total{endpoint="/predict",status="200"}'),
            "/predict in Prometheus",
            60,
        )
        rules = requests.get(prom + "/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"FerApiDown", "FerModelNotReady"}
        # Compose's healthcheck (every 15 s) on the api container.
        api.wait(lambda: api.inspect(".State.Health.Status") == "healthy", "healthy", 60)
        assert not api.problems(), api.problems()
    except BaseException:
        print(run("logs", "--no-color", "--tail=80").stdout)
        raise
    finally:
        down = run("down", "-v", "--remove-orphans", "-t", "45")
        assert down.returncode == 0, down.stderr
