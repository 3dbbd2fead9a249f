#!/usr/bin/env python3
"""The container test (`make compose-test`): the compose stack built and run for real, faults included.

Builds the images (`podman build --network host` on a podman host, `compose build` on a Docker host),
starts the whole stack, edge plus the local-cloud profile, with a generated .env and a light site
file (the demo site's cameras at 640x360, 4 fps), and checks, printing each figure:

  every service healthy (time to healthy per service); frames flowing on every camera; detections
  for every camera (count in the first 30 s); the program's HLS playlist and MJPEG preview through
  the published port, ffprobe reading a segment; the dashboard 401 without the token and its page
  with it; sampler and results bridge healthy with cloud results reaching the edge's detections;
  faults: kill -9 capture (healthy again, no restart loop, no deleted ring left mapped), redis
  stopped and started (every service recovers), edge_infer restarted (no acknowledged detection
  lost or duplicated, nothing left pending).

No engine answering? On a Debian host as root it runs scripts/container-host-setup.sh (podman);
otherwise it prints one line saying why it is skipped and exits 0 (HYBRIDCAM_COMPOSE_TEST=require
makes that a failure, as CI does). Standard library only: it runs before any virtual environment.

    python3 scripts/compose_check.py [--keep] [--no-build]
"""

from __future__ import annotations

import argparse
import fcntl
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "compose-test"
PROJECT = "hybridcam-compose-test"
PODMAN_SOCKET = "/run/podman/podman.sock"
IMAGE_TAG = os.environ.get("STACK_IMAGE_TAG", "0.1.0")
EDGE_SERVICES = ["redis", "frames", "capture", "edge_infer", "events", "compositor", "dashboard"]
CLOUD_SERVICES = ["moto", "local_models", "cloud_poller", "sampler", "results_bridge"]
HEALTHY_WITHIN_S = float(os.environ.get("HYBRIDCAM_COMPOSE_HEALTHY_S", "300"))


class CheckFailed(AssertionError):
    pass


def say(message: str) -> None:
    print(f"compose test: {message}", flush=True)


# -- the engine ------------------------------------------------------------------------------------


class DockerApi:
    """The Docker Engine API over a unix socket (Docker and podman both answer it)."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def request(self, method: str, path: str, timeout_s: float = 30.0) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("engine", timeout=timeout_s)
        connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.sock.settimeout(timeout_s)
        connection.sock.connect(self.socket_path)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def answers(self) -> bool:
        try:
            return self.request("GET", "/_ping", timeout_s=3)[0] == 200
        except OSError:
            return False

    def is_podman(self) -> bool:
        status, body = self.request("GET", "/version")
        return status == 200 and b"podman" in body.lower()

    def containers(self) -> dict[str, dict]:
        """Service name -> the container's inspect document, for this project's containers."""
        filters = json.dumps({"label": [f"com.docker.compose.project={PROJECT}"]})
        status, body = self.request("GET", "/containers/json?all=1&filters=" + urllib.request.quote(filters))
        if status != 200:
            raise CheckFailed(f"the engine refused to list containers: {body[:200]!r}")
        found = {}
        for summary in json.loads(body):
            service = summary.get("Labels", {}).get("com.docker.compose.service")
            if service:
                found[service] = self.inspect(summary["Id"])
        return found

    def inspect(self, container_id: str) -> dict:
        status, body = self.request("GET", f"/containers/{container_id}/json")
        return json.loads(body) if status == 200 else {}

    def start(self, container_id: str) -> None:
        self.request("POST", f"/containers/{container_id}/start")

    def kill(self, container_id: str, signal_name: str = "KILL") -> None:
        status, body = self.request("POST", f"/containers/{container_id}/kill?signal={signal_name}")
        if status not in (200, 204):
            raise CheckFailed(f"kill -{signal_name} was refused: {body[:200]!r}")


def health_of(container: dict) -> str:
    state = container.get("State", {})
    health = state.get("Health") or state.get("Healthcheck") or {}
    if not state.get("Running"):
        return "exited" if state.get("Status") in ("exited", "stopped", "dead") else state.get("Status", "?")
    return health.get("Status") or "running"


@dataclass
class Engine:
    api: DockerApi
    podman: bool
    compose: list[str]
    env: dict[str, str] = field(default_factory=dict)


def find_engine() -> tuple[Engine | None, str]:
    """The engine to use, or None and why not."""
    candidates = []
    if os.environ.get("DOCKER_HOST", "").startswith("unix://"):
        candidates.append(os.environ["DOCKER_HOST"].removeprefix("unix://"))
    candidates += ["/var/run/docker.sock", PODMAN_SOCKET]
    socket_path = next((path for path in candidates if os.path.exists(path) and DockerApi(path).answers()), None)
    if socket_path is None:
        setup = REPO / "scripts" / "container-host-setup.sh"
        if os.geteuid() == 0 and shutil.which("apt-get") and setup.exists():
            say("no container engine answers: setting up podman (scripts/container-host-setup.sh)")
            started = time.monotonic()
            if subprocess.run([str(setup)], cwd=REPO).returncode != 0:
                return None, "scripts/container-host-setup.sh failed (see above)"
            say(f"host set up in {time.monotonic() - started:.0f} s")
            socket_path = PODMAN_SOCKET if DockerApi(PODMAN_SOCKET).answers() else None
        if socket_path is None:
            return None, ("no container engine answers (no Docker or podman socket) and this host cannot set one up "
                          "(that needs root on Debian: sudo scripts/container-host-setup.sh)")
    api = DockerApi(socket_path)
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}"}
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True, env=env).returncode == 0:
        compose = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        compose = ["docker-compose"]
    else:
        return None, "a container engine answers but neither `docker compose` nor docker-compose is installed"
    return Engine(api, api.is_podman(), compose, env), ""


# -- the stack ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    engine: Engine
    token: str
    ports: dict[str, int]
    files: list[str]

    def compose(self, *args: str, timeout_s: float = 600, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
        command = [*self.engine.compose, "-p", PROJECT, *self.files, "--profile", "cloud", "--profile", "local-cloud", *args]
        result = subprocess.run(command, cwd=REPO, env=self.engine.env, timeout=timeout_s,
                                stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None, text=True)
        if check and result.returncode != 0:
            raise CheckFailed(f"`{' '.join(command[len(self.engine.compose):])}` failed (exit {result.returncode})"
                              + (f":\n{result.stdout[-3000:]}" if quiet else ""))
        return result

    def exec(self, service: str, *command: str, timeout_s: float = 60) -> str:
        result = subprocess.run([*self.engine.compose, "-p", PROJECT, *self.files, "--profile", "cloud", "--profile",
                                 "local-cloud", "exec", "-T", service, *command],
                                cwd=REPO, env=self.engine.env, capture_output=True, text=True, errors="replace",
                                timeout=timeout_s)
        if result.returncode != 0:
            raise CheckFailed(f"exec in {service} failed (exit {result.returncode}): {result.stderr[-1500:]}{result.stdout[-500:]}")
        return result.stdout

    def start_up(self) -> subprocess.Popen:
        return subprocess.Popen([*self.engine.compose, "-p", PROJECT, *self.files, "--profile", "cloud", "--profile",
                                 "local-cloud", "up", "-d"], cwd=REPO, env=self.engine.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def containers(self) -> dict[str, dict]:
        return self.engine.api.containers()

    def logs(self, service: str, lines: int = 40) -> str:
        result = self.compose("logs", "--no-color", "--tail", str(lines), service, check=False, quiet=True, timeout_s=60)
        return result.stdout


def write_env(token: str) -> tuple[Path, Path]:
    """The generated .env and the light site file the stack runs with."""
    WORK.mkdir(parents=True, exist_ok=True)
    site = WORK / "site.yaml"
    demo = (REPO / "config" / "site.demo.yaml").read_text()
    light = re.sub(r"(?m)^(  width:).*$", r"\1 640", demo)
    light = re.sub(r"(?m)^(  height:).*$", r"\1 360", light)
    light = re.sub(r"(?m)^(  fps:).*$", r"\1 4", light)
    light = re.sub(r"(?m)^(  cloud_sample_every:).*$", r"\1 4", light)
    site.write_text(light)
    env = WORK / "stack.env"
    env.write_text((REPO / "config" / "example.env").read_text() + "\n# written by scripts/compose_check.py\n" + "\n".join([
        f"HYBRIDCAM_DASHBOARD_TOKEN={token}",
        "HYBRIDCAM_STREAM_MAXLEN=20000",  # the whole run stays in Redis, so nothing is missed by trimming
        "HYBRIDCAM_COMPOSITOR_FPS=10",
        "HYBRIDCAM_COMPOSITOR_WIDTH=960",
        "HYBRIDCAM_COMPOSITOR_HEIGHT=540",
        "HYBRIDCAM_COMPOSITOR_HLS_SEGMENT_S=1",
        "HYBRIDCAM_COMPOSITOR_KEYFRAME_S=1",
        "HYBRIDCAM_EDGE_THREADS=1",
        "",
    ]))
    return env, site


def build_images(engine: Engine, stack: Stack) -> dict[str, float]:
    figures = {}
    if engine.podman:
        for target, image in (("edge", "hybridcam-edge"), ("local-cloud", "hybridcam-local-cloud")):
            started = time.monotonic()
            command = ["podman", "build", "--network", "host", "--pull=never", "--target", target,
                       "-t", f"{image}:{IMAGE_TAG}", "-f", "docker/Dockerfile", "."]
            say(f"building {image}:{IMAGE_TAG} ({' '.join(command[:4])} ...)")
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            if result.returncode != 0:
                raise CheckFailed(f"building {image} failed:\n{(result.stdout + result.stderr)[-4000:]}")
            figures[image] = time.monotonic() - started
            cached = result.stdout.count("Using cache")
            say(f"built {image} in {figures[image]:.0f} s ({cached} cached steps)")
    else:
        started = time.monotonic()
        say("building the images (compose build)")
        stack.compose("build")
        figures["images"] = time.monotonic() - started
        say(f"built the images in {figures['images']:.0f} s")
    say("not built: hybridcam-edge-gpu (docker/Dockerfile.gpu needs NVIDIA's base image and a GPU host)")
    return figures


# -- checks ----------------------------------------------------------------------------------------


CREATED_GRACE_S = 30.0


def wait_healthy(stack: Stack, services: list[str], since: float, timeout_s: float) -> dict[str, float]:
    """Seconds from ``since`` until each service turned healthy."""
    healthy: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    created_since: dict[str, float] = {}
    while time.monotonic() < deadline and len(healthy) < len(services):
        containers = stack.containers()
        for service in services:
            states[service] = health_of(containers.get(service, {})) if service in containers else "absent"
            if service not in healthy and states[service] == "healthy":
                healthy[service] = time.monotonic() - since
            if states[service] == "created":
                # A container left "created" after compose asked to start it (podman's API service, when its
                # working directory was removed under it): compose would wait on it until the deadline.
                first = created_since.setdefault(service, time.monotonic())
                if time.monotonic() - first > CREATED_GRACE_S:
                    say(f"{service} still only created after {CREATED_GRACE_S:.0f} s: starting it")
                    stack.engine.api.start(containers[service]["Id"])
                    created_since[service] = time.monotonic()
            else:
                created_since.pop(service, None)
        time.sleep(1)
    missing = [s for s in services if s not in healthy]
    if missing:
        logs = "\n".join(f"--- {s} ({states.get(s)})\n{stack.logs(s)}" for s in missing)
        raise CheckFailed(f"not healthy within {timeout_s:.0f} s: {', '.join(f'{s} ({states.get(s)})' for s in missing)}\n{logs}")
    return healthy


PROBE_SCRIPT = r"""
import json, os
import redis
from shared.schemas import decode
from shared.stream_bus import PAYLOAD_FIELD
client = redis.Redis.from_url(os.environ["HYBRIDCAM_REDIS_URL"], socket_timeout=10)
cameras = json.loads(os.environ["CAMERAS"])
added, pending, rows = {}, {}, []
for camera in cameras:
    stream = "frames:" + camera
    added[camera] = int(client.xinfo_stream(stream).get("entries-added", 0)) if client.exists(stream) else 0
    for group in client.xinfo_groups(stream) if client.exists(stream) else []:
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        # stranded: delivered, unacknowledged for 15 s (in-flight entries are younger)
        stranded = client.xpending_range(stream, name, min="-", max="+", count=1000, idle=15000)
        pending[name] = pending.get(name, 0) + len(stranded)
for entry_id, fields in client.xrange("detections", min=os.environ.get("SINCE", "-")):
    try:
        m = decode(fields[PAYLOAD_FIELD])
    except Exception:
        continue
    if type(m).__name__ == "DetectionSet":
        rows.append([entry_id.decode(), m.camera_id, m.frame_id, m.source, m.capture_ts, len(m.detections)])
print(json.dumps({"added": added, "pending": pending, "rows": rows}))
"""


@dataclass
class Probe:
    added: dict[str, int]  # entries ever added to each camera's frame stream (trimming does not lower it)
    pending: dict[str, int]  # frame entries delivered and left unacknowledged for 15 s, per consumer group
    rows: list[list]  # detection sets: [entry id, camera, frame id, source, capture_ts, boxes]


def probe(stack: Stack, cameras: list[str], since: str = "-") -> Probe:
    """What Redis holds (detection sets from entry id ``since`` on), read by the project's own code
    inside the frames container (it never restarts)."""
    out = stack.exec("frames", "env", f"CAMERAS={json.dumps(cameras)}", f"SINCE={since}", "python", "-c", PROBE_SCRIPT,
                     timeout_s=90)
    return Probe(**json.loads(out))


def frames_added(stack: Stack, cameras: list[str]) -> dict[str, int]:
    return probe(stack, cameras).added


def detections(stack: Stack, cameras: list[str], since: str = "-") -> dict:
    found = probe(stack, cameras, since)
    return {"rows": found.rows, "pending": found.pending}


def camera_ids(site: Path) -> list[str]:
    return re.findall(r"(?m)^  - id: (\S+)", site.read_text())


def http_get(url: str, timeout_s: float = 10, headers: dict[str, str] | None = None, limit: int | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            headers = {key.lower(): value for key, value in response.headers.items()}
            return response.status, headers, response.read(limit) if limit else response.read()
    except urllib.error.HTTPError as error:
        return error.code, {key.lower(): value for key, value in error.headers.items()}, error.read()


def check_hls_and_preview(stack: Stack) -> str:
    base = f"http://127.0.0.1:{stack.ports['preview']}"
    deadline = time.monotonic() + 60
    playlist = b""
    while time.monotonic() < deadline:
        status, _, playlist = http_get(f"{base}/hls/program.m3u8")
        if status == 200 and re.search(rb"program-\d+\.ts", playlist):
            break
        time.sleep(1)
    segments = re.findall(rb"program-\d+\.ts", playlist)
    if not segments:
        raise CheckFailed(f"no HLS playlist with segments on {base}/hls/program.m3u8 within 60 s")
    status, _, segment = http_get(f"{base}/hls/{segments[-1].decode()}")
    if status != 200:
        raise CheckFailed(f"HLS segment {segments[-1].decode()} answered {status}")
    with tempfile.NamedTemporaryFile(suffix=".ts") as saved:
        saved.write(segment)
        saved.flush()
        probe = probe_video(saved.name)
    status, headers, head = http_get(f"{base}/stream", limit=4096)
    if status != 200 or not headers.get("content-type", "").startswith("multipart/x-mixed-replace") or b"\xff\xd8" not in head:
        raise CheckFailed(f"MJPEG preview on {base}/stream did not answer a JPEG picture (HTTP {status})")
    return f"HLS {len(segments)} segments in the playlist, last one {len(segment) // 1024} KiB: {probe}; MJPEG preview answers JPEG pictures"


def probe_video(path: str) -> str:
    if shutil.which("ffprobe") is None:
        raise CheckFailed("ffprobe is not installed (Debian package ffmpeg; make system-packages)")
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,width,height:format=duration", "-of", "json", path],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise CheckFailed(f"ffprobe could not read the HLS segment: {result.stderr.strip()}")
    info = json.loads(result.stdout)
    video = info["streams"][0]
    return f"ffprobe {video['codec_name']} {video['width']}x{video['height']}, {float(info['format']['duration']):.1f} s"


def check_dashboard(stack: Stack) -> str:
    base = f"http://127.0.0.1:{stack.ports['dashboard']}"
    without, _, _ = http_get(f"{base}/")
    with_token, headers, page = http_get(f"{base}/?token={stack.token}")
    api, _, _ = http_get(f"{base}/api/state", headers={"Authorization": f"Bearer {stack.token}"})
    if without != 401:
        raise CheckFailed(f"the dashboard answered {without} without the token (401 expected)")
    if with_token != 200 or b"<html" not in page.lower() or api != 200:
        raise CheckFailed(f"the dashboard answered {with_token} (page) / {api} (api/state) with the token")
    return f"dashboard: 401 without the token, page ({len(page)} B, {headers.get('content-type')}) and /api/state with it"


def wait_for(condition, timeout_s: float, interval_s: float = 1.0) -> float | None:
    """Seconds until ``condition()`` held (a failing probe counts as not yet), None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if condition():
                return time.monotonic() - started
        except CheckFailed:
            pass
        time.sleep(interval_s)
    return None


def restarts(stack: Stack) -> dict[str, int]:
    return {service: int(c.get("RestartCount", 0)) for service, c in stack.containers().items()}


def deleted_rings_mapped(stack: Stack, service: str) -> int:
    out = stack.exec(service, "sh", "-c", "cat /proc/[0-9]*/maps 2>/dev/null | grep -c '/dev/shm/hybridcam_.*(deleted)' || true")
    return int(out.strip() or 0)


def kill_process(stack: Stack, container: dict) -> None:
    """kill -9 the container's main process, as a crash or the OOM killer would. An engine's own
    `kill` counts as a deliberate stop, after which `unless-stopped` does not restart it."""
    pid = int(container.get("State", {}).get("Pid") or 0)
    if pid > 0 and Path(f"/proc/{pid}").exists():
        os.kill(pid, 9)
    else:  # the engine runs elsewhere: its kill, then start it as a supervisor would
        stack.engine.api.kill(container["Id"], "KILL")
        stack.compose("start", "capture", quiet=True, timeout_s=120)


def fault_kill_capture(stack: Stack, cameras: list[str]) -> str:
    before = restarts(stack)
    capture = stack.containers()["capture"]
    added = frames_added(stack, cameras)
    kill_process(stack, capture)
    killed_at = time.monotonic()
    flowing = wait_for(lambda: all(n > added[c] + 4 for c, n in frames_added(stack, cameras).items()), 180)
    healthy = wait_for(lambda: health_of(stack.containers().get("capture", {})) == "healthy", 180)
    if flowing is None or healthy is None:
        raise CheckFailed(f"capture did not come back healthy with frames within 180 s of kill -9\n{stack.logs('capture')}")
    time.sleep(max(0.0, 30 - (time.monotonic() - killed_at)))  # watch for a restart loop
    after = restarts(stack)
    capture_restarts = after.get("capture", 0) - before.get("capture", 0)
    state = health_of(stack.containers()["capture"])
    if capture_restarts > 1 or state != "healthy":
        raise CheckFailed(f"capture restarted {capture_restarts} times after one kill -9 (now {state}): a restart loop\n"
                          f"{stack.logs('capture')}")
    stale = {service: deleted_rings_mapped(stack, service) for service in ("compositor", "dashboard", "edge_infer")}
    if any(stale.values()):
        raise CheckFailed(f"deleted frame rings still mapped 30 s after the restart: {stale}")
    others = {s: after.get(s, 0) - before.get(s, 0) for s in after if s != "capture" and after.get(s, 0) != before.get(s, 0)}
    return (f"kill -9 capture: frames flowing again {flowing:.1f} s after the kill, healthy after {flowing + healthy:.1f} s, "
            f"{capture_restarts} restart in 30 s "
            f"(no loop), 0 deleted rings mapped by compositor/dashboard/edge_infer, other services restarted: {others or 'none'}")


def fault_redis_outage(stack: Stack, cameras: list[str], services: list[str]) -> str:
    before = restarts(stack)
    since = f"{int(time.time() * 1000)}-0"
    stack.compose("stop", "redis", quiet=True, timeout_s=120)
    time.sleep(5)
    stack.compose("start", "redis", quiet=True, timeout_s=120)
    started = time.monotonic()
    baseline: dict[str, int] = {}

    def frames_move() -> bool:
        now = frames_added(stack, cameras)
        if not baseline:
            baseline.update(now)
            return False
        return all(now[c] > baseline[c] for c in cameras)

    flowing = wait_for(frames_move, 180, interval_s=2)
    detecting = wait_for(lambda: {r[1] for r in probe(stack, cameras, since).rows if r[3] == "edge"} >= set(cameras),
                         180, interval_s=2)
    if flowing is None or detecting is None:
        raise CheckFailed("frames or detections did not flow again after Redis came back\n" + stack.logs("capture") + stack.logs("edge_infer"))
    healthy = wait_healthy(stack, services, started, 180)
    after = restarts(stack)
    restarted = {s: after[s] - before.get(s, 0) for s in after if after[s] != before.get(s, 0)}
    slowest = max(healthy, key=healthy.get)  # type: ignore[arg-type]
    return (f"redis stopped for 5 s: frames flowing again {flowing:.1f} s after it started, edge detections on every "
            f"camera by {flowing + detecting:.1f} s, every service healthy by {healthy[slowest]:.1f} s ({slowest} last); "
            f"container restarts: {restarted or 'none'}")


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def fault_restart_edge_infer(stack: Stack, cameras: list[str]) -> str:
    window = f"{int(time.time() * 1000) - 60_000}-0"  # the last minute's detection sets must all survive
    before = detections(stack, cameras, window)
    edge_before = {(r[1], r[2]) for r in before["rows"] if r[3] == "edge"}
    ids_before = {r[0] for r in before["rows"]}
    last_id = max((r[0] for r in before["rows"]), default="0-0", key=_entry_key)
    started = time.monotonic()
    stack.compose("restart", "edge_infer", quiet=True, timeout_s=180)
    new_rows: list = []

    def resumed() -> bool:
        nonlocal new_rows
        rows = detections(stack, cameras, f"({last_id}")["rows"]
        new_rows = [r for r in rows if r[3] == "edge"]
        return {r[1] for r in new_rows} >= set(cameras)

    recovered = wait_for(resumed, 180, interval_s=2)
    if recovered is None:
        raise CheckFailed(f"edge detections did not resume for every camera after the restart\n{stack.logs('edge_infer')}")
    recovery_s = time.monotonic() - started
    after = detections(stack, cameras, window)
    ids_after = {r[0] for r in after["rows"]}
    lost = len(ids_before - ids_after)
    edge_keys = [(r[1], r[2]) for r in after["rows"] if r[3] == "edge"]
    duplicated = len(edge_keys) - len(set(edge_keys))
    pending = wait_for(lambda: detections(stack, cameras, "+")["pending"].get("edge_infer", 0) == 0, 90, interval_s=3)
    if lost or duplicated or pending is None:
        raise CheckFailed(f"edge_infer restart: {lost} detection sets lost, {duplicated} duplicated, "
                          f"pending {detections(stack, cameras, '+')['pending']}")
    return (f"restart edge_infer: detections on every camera again {recovery_s:.1f} s after the restart; "
            f"{len(edge_before)} acknowledged detection sets before it, 0 lost, 0 duplicated frame ids, "
            f"no frame left pending in edge_infer's group")


# -- the run -----------------------------------------------------------------------------------------


def hold_lock() -> object:
    """One container test or image build at a time on this checkout (CI builds in the background)."""
    WORK.mkdir(parents=True, exist_ok=True)
    lock = open(WORK / ".lock", "w")  # noqa: SIM115 - held open for the whole run; closed by the process exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say("waiting for the image build already running (build/compose-build.log)")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def run(args: argparse.Namespace) -> int:
    total_started = time.monotonic()
    engine, why_not = find_engine()
    if engine is None:
        if os.environ.get("HYBRIDCAM_COMPOSE_TEST") == "require":
            print(f"compose test FAILED: {why_not}", file=sys.stderr)
            return 1
        print(f"compose test skipped: {why_not}")
        return 0
    lock = hold_lock()  # noqa: F841 (held until the process exits)
    say(f"engine: {'podman' if engine.podman else 'Docker'} at {engine.env['DOCKER_HOST']}, compose: {' '.join(engine.compose)}")
    saved = WORK / "stack.json"
    if args.running:
        token, ports = json.loads(saved.read_text()).values()
    else:
        token, ports = secrets.token_urlsafe(18), {"preview": free_port(), "dashboard": free_port(), "moto": free_port()}
    env_file, site = write_env(token)
    saved.write_text(json.dumps({"token": token, "ports": ports}))
    cameras = camera_ids(site)
    engine.env.update({
        "STACK_ENV_FILE": str(env_file), "STACK_SITE_FILE": str(site), "STACK_IMAGE_TAG": IMAGE_TAG,
        "STACK_PREVIEW_PORT": str(ports["preview"]), "STACK_DASHBOARD_PORT": str(ports["dashboard"]),
        "STACK_MOTO_PORT": str(ports["moto"]), "STACK_AWS_DIR": str(WORK / "no-aws"),
    })
    (WORK / "no-aws").mkdir(exist_ok=True)
    stack = Stack(engine, token, ports, ["-f", "docker-compose.yml", "-f", "docker-compose.local-cloud.yml"])
    figures: list[str] = []
    if args.build_only:
        try:
            build_images(engine, stack)
        except CheckFailed as error:
            print(f"compose test FAILED: {error}", file=sys.stderr)
            return 1
        return 0
    try:
        if not args.running:
            stack.compose("down", "-v", "--remove-orphans", check=False, quiet=True, timeout_s=180)
        if not args.no_build and not args.running:
            built = build_images(engine, stack)
            figures.append("image builds: " + ", ".join(f"{name} {s:.0f} s" for name, s in built.items()))
        say(f"starting the stack: {len(cameras)} cameras at 640x360, 4 fps; edge + cloud + local-cloud profiles")
        started = time.monotonic()
        services = EDGE_SERVICES + CLOUD_SERVICES
        up = None if args.running else stack.start_up()  # 1.29 blocks until dependencies are healthy: watch meanwhile
        healthy = wait_healthy(stack, services, started, HEALTHY_WITHIN_S)
        if up is not None and up.wait(timeout=300) != 0:
            raise CheckFailed(f"`compose up -d` failed:\n{up.stdout.read() if up.stdout else ''}")
        line = "time to healthy: " + ", ".join(f"{s} {healthy[s]:.0f} s" for s in sorted(healthy, key=healthy.get))  # type: ignore[arg-type]
        say(line)
        figures.append(line)
        first_frame = time.time()
        window_started = time.monotonic()
        added = frames_added(stack, cameras)
        figures.append(say_figure(check_hls_and_preview(stack)))
        figures.append(say_figure(check_dashboard(stack)))
        time.sleep(max(0.0, 30 - (time.monotonic() - window_started)))
        now = frames_added(stack, cameras)
        stalled = [c for c in cameras if now[c] <= added[c]]
        if stalled:
            raise CheckFailed(f"frames do not flow on {', '.join(stalled)}")
        figures.append(say_figure("frames in 30 s: " + ", ".join(f"{c} {now[c] - added[c]}" for c in cameras)))
        window_id = f"{int(first_frame * 1000)}-0"
        found = detections(stack, cameras, window_id)
        per_camera = {c: sum(1 for r in found["rows"] if r[1] == c and r[3] == "edge" and first_frame <= r[4] < first_frame + 30) for c in cameras}
        missing = [c for c, n in per_camera.items() if n == 0]
        if missing:
            raise CheckFailed(f"no edge detections for {', '.join(missing)} in the first 30 s\n{stack.logs('edge_infer')}")
        figures.append(say_figure("edge detections in the first 30 s: " + ", ".join(f"{c} {n}" for c, n in per_camera.items())))
        cloud_at = wait_for(lambda: any(r[3] == "cloud" for r in detections(stack, cameras, window_id)["rows"]), 180, interval_s=3)
        if cloud_at is None:
            raise CheckFailed("no cloud result reached the edge's detections stream within 180 s\n"
                              + stack.logs("sampler") + stack.logs("cloud_poller") + stack.logs("results_bridge"))
        cloud_rows = [r for r in detections(stack, cameras, window_id)["rows"] if r[3] == "cloud"]
        figures.append(say_figure(f"local cloud: sampler and results_bridge healthy, {len(cloud_rows)} cloud detection sets "
                                  f"on the edge ({cloud_at + 30:.0f} s after all-healthy)"))
        figures.append(say_figure(fault_kill_capture(stack, cameras)))
        figures.append(say_figure(fault_redis_outage(stack, cameras, services)))
        figures.append(say_figure(fault_restart_edge_infer(stack, cameras)))
    except (CheckFailed, subprocess.TimeoutExpired) as error:
        print(f"compose test FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep and not args.running:
            # podman may refuse to remove frames (the IPC owner) while its joiners are still being
            # removed in parallel: a second pass removes it, its network and the volumes.
            for _ in range(2):
                stack.compose("down", "-v", "--remove-orphans", check=False, quiet=True, timeout_s=300)
                try:
                    if not stack.containers():
                        break
                except (CheckFailed, OSError):
                    break
    say(f"passed in {time.monotonic() - total_started:.0f} s")
    return 0


def wait_for_project(compose_command: str, timeout_s: float = HEALTHY_WITHIN_S) -> int:
    """`make up` with a compose that has no --wait (1.29): wait until the started services are healthy."""
    socket_path = next((p for p in (os.environ.get("DOCKER_HOST", "").removeprefix("unix://"), "/var/run/docker.sock",
                                    PODMAN_SOCKET) if p and os.path.exists(p) and DockerApi(p).answers()), None)
    if socket_path is None:
        print("make up: no container engine answers (set DOCKER_HOST)", file=sys.stderr)
        return 1
    api = DockerApi(socket_path)
    ids = subprocess.run([*compose_command.split(), "ps", "-q"], cwd=REPO, capture_output=True, text=True).stdout.split()
    started = time.monotonic()
    waiting = set(ids)
    while waiting and time.monotonic() - started < timeout_s:
        for container_id in sorted(waiting):
            container = api.inspect(container_id)
            state = health_of(container)
            if state in ("healthy", "running"):
                waiting.discard(container_id)
                print(f"make up: {container.get('Name', container_id).lstrip('/')} {state} after {time.monotonic() - started:.0f} s")
            elif state == "exited":
                print(f"make up: {container.get('Name', container_id).lstrip('/')} exited (see `make logs`)", file=sys.stderr)
                return 1
        time.sleep(2)
    if waiting:
        print(f"make up: {len(waiting)} service(s) not healthy within {timeout_s:.0f} s (see `make logs`)", file=sys.stderr)
        return 1
    return 0


def say_figure(line: str) -> str:
    say(line)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards (compose -p " + PROJECT + ")")
    parser.add_argument("--no-build", action="store_true", help="use the images already built")
    parser.add_argument("--running", action="store_true", help="check the stack a previous --keep run left running")
    parser.add_argument("--build-only", action="store_true", help="set the host up if needed and build the images, nothing else")
    parser.add_argument("--wait-healthy", metavar="COMPOSE", help="only wait until the services COMPOSE started are healthy")
    args = parser.parse_args()
    if args.wait_healthy:
        return wait_for_project(args.wait_healthy)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
