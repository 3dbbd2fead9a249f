"""The Kubernetes manifests run for real: `podman kube play` of the rendered single-node profile.

Renders deploy/kubernetes/site.two-servers.yaml (two camera groups; cameras at 640x360, 4 fps so the
Pods' own /dev/shm holds the rings) with `hybridcam k8s render --profile single-node`, validates it
offline against the Kubernetes schemas, plays it with podman on its own network, and checks, printing
each figure: every container's probe healthy (time to healthy), and edge detections for every camera
(time from the play to each camera's first detection; goal within 60 s of the Pods being up). Then
the two-server test (scripts/two_servers_check.py): both edge Pods' cameras on the dashboard, in the
program and in events; one edge Pod killed (its cameras shown down within 10 s, the other's output
going on) and started again (nothing acknowledged lost). Then it takes everything down.

Runs after the container test (`make compose-test` sets podman up and builds the edge image). Where
podman does not answer it prints one line saying why it is skipped and exits 0
(HYBRIDCAM_COMPOSE_TEST=require makes that a failure, as for the container test).

    .venv/bin/python scripts/kube_play_check.py [--keep] [--healthy-within 300]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import two_servers_check  # noqa: E402 (beside this script)

from hybridcam.k8s.manifests import RenderOptions, render, to_yaml  # noqa: E402
from hybridcam.k8s.validation import validate_documents  # noqa: E402
from shared.site_config import parse_site  # noqa: E402

SITE = REPO / "deploy" / "kubernetes" / "site.two-servers.yaml"
# its own tag, built from this checkout every run (cached layers make that quick): the compose test's
# hybridcam-edge:0.1.0 may come from another checkout on a shared host
IMAGE = "hybridcam-edge:kube-check"
NETWORK = "hybridcam-kube-test"
SECRET = "hybridcam-secrets"
POD_SUFFIX = "-pod-0"  # podman 4.3 names a Deployment's Pod NAME-pod-0 and resolves it by that name
DETECTIONS_WITHIN_S = 60.0

COUNT_DETECTIONS = """
import json, os
from shared.schemas import DetectionSet, decode
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from shared.settings import CommonSettings, load_settings
bus = StreamBus(load_settings(CommonSettings).redis_url)
first = {}
for _, fields in bus.redis.xrange(DETECTIONS_STREAM):
    message = decode(fields[b"m"])
    if isinstance(message, DetectionSet) and message.source == "edge":
        first.setdefault(message.camera_id, message.published_ts)
print(json.dumps(first))
"""


class CheckFailed(AssertionError):
    pass


def say(message: str) -> None:
    print(f"kube play test: {message}", flush=True)


def podman(*args: str, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args[:3])} failed: {(result.stderr or result.stdout).strip()[-1500:]}")
    return result


def skip_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (make compose-test sets it up on a Debian host as root)"
    if podman("info", check=False, timeout_s=60).returncode != 0:
        return "podman does not answer"
    return None


def light_site() -> tuple[str, object]:
    document = yaml.safe_load(SITE.read_text())
    document["defaults"].update({"width": 640, "height": 360, "fps": 4})
    text = yaml.safe_dump(document, sort_keys=False)
    return text, parse_site(document, origin=str(SITE))


def manifests(site_text: str, site: object, work: Path) -> tuple[Path, dict[str, str]]:
    values = {"redis-password": secrets.token_urlsafe(24), "dashboard-token": secrets.token_urlsafe(24)}
    options = RenderOptions(profile="single-node", image=IMAGE, image_pull_policy="Never", host_suffix=POD_SUFFIX,
                            redis_password=values["redis-password"], dashboard_token=values["dashboard-token"])
    documents = render(site, site_text, options)  # type: ignore[arg-type]
    problems = validate_documents(documents, "1.30.0")
    if problems:
        raise CheckFailed("the rendered manifests fail the Kubernetes schemas: " + "; ".join(problems))
    say(f"{len(documents)} manifests rendered and valid against the Kubernetes 1.30 schemas")
    # podman 4.3 cannot read a Secret manifest back (it wants the podman secret as a JSON map of base64
    # values), so the Secret is created as a podman secret and left out of the played file
    secret = next(d for d in documents if d["kind"] == "Secret")
    (work / "secret.json").write_text(json.dumps(secret["data"]))
    played = work / "site.k8s.yaml"
    played.write_text(to_yaml([d for d in documents if d["kind"] != "Secret"]))
    return played, values


def containers() -> dict[str, str]:
    """Our containers (name -> health status) of the played Pods."""
    result = podman("ps", "-a", "--format", "json", timeout_s=60)
    found = {}
    for entry in json.loads(result.stdout or "[]"):
        name = entry["Names"][0]
        if POD_SUFFIX + "-" in name and not name.endswith("-infra"):
            state = podman("inspect", name, "--format", "{{.State.Health.Status}}", check=False, timeout_s=60).stdout.strip()
            found[name] = state or entry.get("State", "?")
    return found


def wait_healthy(expected: int, within_s: float, started: float) -> dict[str, float]:
    healthy_at: dict[str, float] = {}
    last: dict[str, str] = {}
    while time.monotonic() - started < within_s:
        last = containers()
        for name, state in last.items():
            if state == "healthy":
                healthy_at.setdefault(name, time.monotonic() - started)
        # each probe healthy once and none failing now (on a loaded box an exec probe can overrun its
        # timeout now and then, which only resets its streak)
        if len(healthy_at) >= expected and "unhealthy" not in last.values():
            return healthy_at
        time.sleep(3)
    raise CheckFailed(f"not every probe healthy within {within_s:.0f} s: healthy once {sorted(healthy_at)}, now {last}")


def first_detections(edge_container: str, cameras: list[str], play_wall: float, within_s: float) -> dict[str, float]:
    deadline = time.monotonic() + within_s
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        result = podman("exec", edge_container, "python", "-c", COUNT_DETECTIONS, check=False, timeout_s=120)
        if result.returncode == 0 and result.stdout.strip():
            seen = {camera: ts - play_wall for camera, ts in json.loads(result.stdout.strip().splitlines()[-1]).items()}
            if set(cameras) <= set(seen):
                return seen
        time.sleep(3)
    raise CheckFailed(f"no edge detections within {within_s:.0f} s for {sorted(set(cameras) - set(seen))}")


def probe_seconds(container: str) -> float:
    """How long edge-infer's back-end probe took at its start (0 when it did not run)."""
    logs = podman("logs", container, check=False, timeout_s=60)
    found = re.search(r"measured now in (\d+) s", logs.stdout + logs.stderr)
    return float(found.group(1)) if found else 0.0


def tear_down(played: Path) -> None:
    podman("kube", "play", "--down", str(played), check=False, timeout_s=300)
    podman("secret", "rm", SECRET, check=False, timeout_s=60)
    podman("network", "rm", NETWORK, check=False, timeout_s=60)


def run(args: argparse.Namespace) -> int:
    site_text, site = light_site()
    cameras = [camera.id for camera in site.resolved()]  # type: ignore[attr-defined]
    started = time.monotonic()
    build = subprocess.run(["podman", "build", "--network", "host", "--pull=never", "--target", "edge", "-t", IMAGE,
                            "-f", "docker/Dockerfile", "."], cwd=REPO, capture_output=True, text=True)
    if build.returncode != 0:
        raise CheckFailed(f"building {IMAGE} failed: {(build.stdout + build.stderr)[-3000:]}")
    say(f"built {IMAGE} in {time.monotonic() - started:.0f} s")
    with tempfile.TemporaryDirectory(prefix="hybridcam-kube-") as tmp:
        work = Path(tmp)
        played, values = manifests(site_text, site, work)
        tear_down(played)  # what an interrupted earlier run left
        podman("network", "create", NETWORK, timeout_s=60)
        podman("secret", "create", SECRET, str(work / "secret.json"), timeout_s=60)
        try:
            started, play_wall = time.monotonic(), time.time()
            podman("kube", "play", "--network", NETWORK, str(played), timeout_s=600)
            say(f"played in {time.monotonic() - started:.1f} s")
            expected = sum(len(d["spec"]["template"]["spec"]["containers"])
                           for d in yaml.safe_load_all(played.read_text()) if d and d["kind"] == "Deployment")
            healthy_at = wait_healthy(expected, args.healthy_within, started)
            for name, seconds in sorted(healthy_at.items(), key=lambda item: item[1]):
                say(f"  {name}: probe healthy {seconds:.0f} s after the play")
            pods_up = max(healthy_at.values())
            first = first_detections(f"edge-1{POD_SUFFIX}-edge-infer", cameras, play_wall, DETECTIONS_WITHIN_S + pods_up)
            for camera in cameras:
                say(f"  camera {camera}: first edge detection {first[camera]:.1f} s after the play")
            slowest = max(first[camera] for camera in cameras)
            probes = [probe_seconds(f"{group}{POD_SUFFIX}-edge-infer") for group in ("edge-1", "edge-2")]
            if any(probes):
                say(f"  of which the edge's one-time back-end probe (cached afterwards): {max(probes):.0f} s")
            say(f"every probe healthy within {pods_up:.0f} s; edge detections on all {len(cameras)} cameras within "
                f"{slowest:.0f} s of the play ({slowest - pods_up:+.0f} s after the last probe turned healthy)")
            if slowest > DETECTIONS_WITHIN_S and slowest - pods_up > DETECTIONS_WITHIN_S:
                raise CheckFailed(f"detections on every camera took {slowest:.0f} s (goal {DETECTIONS_WITHIN_S:.0f} s)")
            if not args.one_server:
                servers = {group.group: list(group.cameras) for group in site.placement_groups()}  # type: ignore[attr-defined]
                try:
                    two_servers_check.run(NETWORK, values["redis-password"], values["dashboard-token"], servers, play_wall, POD_SUFFIX)
                except two_servers_check.TwoServersFailed as error:
                    raise CheckFailed(f"two-server test: {error}") from None
        finally:
            if not args.keep:
                tear_down(played)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the Pods running afterwards")
    parser.add_argument("--one-server", action="store_true", help="skip the two-server part (kill and restart of one edge Pod)")
    parser.add_argument("--healthy-within", type=float, default=300.0, help="seconds allowed for every probe to turn healthy")
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        say(f"skipped: {reason}")
        return 1 if os.environ.get("HYBRIDCAM_COMPOSE_TEST") == "require" else 0
    try:
        return run(args)
    except CheckFailed as error:
        say(f"FAILED: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
