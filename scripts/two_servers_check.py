"""Two edge servers, one site: the second half of the kube play test (scripts/kube_play_check.py).

The played site has two edge Pods, ``edge-1`` (wide, north-west, north-east) and ``edge-2``
(south-west, south-east, centre): each its own network namespace, /dev/shm rings and frame Redis,
both publishing to the site Redis; the compositor and the dashboard (with the events service beside
it) run in Pods of their own. From the host, through the Pods' addresses, this checks and prints:

1. the dashboard shows every camera of both servers up, the program cuts to cameras of both, and
   events ("person on the floor") come from cameras of both;
2. ``podman pod kill`` of edge-2: the time until the dashboard shows its cameras down (goal within
   10 s), and over the next 30 s, edge-1's detections, events and the program go on;
3. ``podman pod start`` of edge-2: the time until its cameras are up again with new detections, and
   nothing acknowledged before the kill is gone (the detection sets edge-2 published, the events
   stored, the events service's consumer group caught up with no entry left pending).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import redis

from shared.schemas import DetectionSet, Health, decode
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, payload_of

DOWN_WITHIN_S = 10.0
CONTINUITY_S = 30.0
BACK_WITHIN_S = 240.0
EVENTS_GROUP = "events"
UP = {"ok", "degraded"}  # degraded: delivering, below its rate (a loaded box)
T = TypeVar("T")


class TwoServersFailed(AssertionError):
    pass


def say(message: str) -> None:
    print(f"two-server test: {message}", flush=True)


def podman(*args: str, timeout_s: float = 120) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise TwoServersFailed(f"podman {' '.join(args[:3])} failed: {(result.stderr or result.stdout).strip()[-800:]}")
    return result.stdout


def pod_address(container: str, network: str) -> str:
    return podman("inspect", container, "--format", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}').strip()


def wait_for(what: str, check: Callable[[], T | None], within_s: float, every_s: float = 1.0) -> tuple[T, float]:
    """``check``'s first truthy answer and the seconds it took; a failure names ``what``."""
    started = time.monotonic()
    last_error = ""
    while time.monotonic() - started < within_s:
        try:
            answer = check()
        except (httpx.HTTPError, redis.RedisError, ValueError, KeyError) as error:
            answer, last_error = None, f" (last error: {error})"
        if answer:
            return answer, time.monotonic() - started
        time.sleep(every_s)
    raise TwoServersFailed(f"{what}: not within {within_s:.0f} s{last_error}")


@dataclass
class Site:
    """The site as the test sees it from the host: the dashboard's API, the site Redis, the compositor's files."""

    dashboard: httpx.Client
    bus: redis.Redis
    compositor: str  # container name
    servers: dict[str, list[str]]  # edge server -> its cameras
    since: float  # when the site was played: every event of the test started after it

    def state(self) -> dict[str, Any]:
        answer = self.dashboard.get("/api/state")
        answer.raise_for_status()
        return answer.json()

    def camera_states(self) -> dict[str, str]:
        return {camera["camera_id"]: camera["capture"]["state"] for camera in self.state()["cameras"]}

    def events(self, since: float) -> list[dict[str, Any]]:
        answer = self.dashboard.get("/api/events", params={"since": since, "limit": 5000})
        if answer.status_code == 503:  # no events database yet
            return []
        answer.raise_for_status()
        return answer.json()["events"]

    def cuts(self) -> list[dict[str, Any]]:
        text = podman("exec", self.compositor, "cat", "/data/program/edit-decision-list.jsonl")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def detection_sets(self, since_ts: float) -> list[tuple[str, DetectionSet]]:
        entries = self.bus.xrange(DETECTIONS_STREAM, min=f"{int(since_ts * 1000)}-0")
        found = []
        for entry_id, fields in entries:
            message = decode(payload_of(fields))
            if isinstance(message, DetectionSet) and message.source == "edge":
                found.append((entry_id.decode(), message))
        return found

    def program_pictures(self) -> float:
        for _, fields in self.bus.xrevrange(HEALTH_STREAM, count=200):
            message = decode(payload_of(fields))
            if isinstance(message, Health) and message.service == "compositor":
                return message.counters.get("pictures", 0.0)
        return 0.0

    def server_of(self, camera: str) -> str:
        return next(server for server, cameras in self.servers.items() if camera in cameras)

    def by_server(self, cameras: Iterable[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {server: set() for server in self.servers}
        for camera in cameras:
            if camera in self.all_cameras:
                found[self.server_of(camera)].add(camera)
        return found

    @property
    def all_cameras(self) -> set[str]:
        return {camera for cameras in self.servers.values() for camera in cameras}


def on_every_server(found: dict[str, set[str]]) -> dict[str, set[str]] | None:
    return found if all(found.values()) else None


def both_servers_working(site: Site, started_wall: float) -> None:
    def every_camera_up() -> dict[str, str] | None:
        states = site.camera_states()
        return states if set(states) >= site.all_cameras and set(states.values()) <= UP else None

    states, waited = wait_for("every camera of both servers up on the dashboard", every_camera_up, 120)
    say(f"dashboard: all {len(states)} cameras of {len(site.servers)} servers up ({waited:.0f} s)")
    cut_to, waited = wait_for("program cuts to cameras of both servers",
                              lambda: on_every_server(site.by_server(cut["camera"] for cut in site.cuts() if cut["camera"])),
                              180, every_s=3.0)
    say(f"program: cuts to {', '.join(f'{s}: {sorted(c)}' for s, c in cut_to.items())} ({waited:.0f} s)")
    event_cameras, waited = wait_for("events from cameras of both servers",
                                     lambda: on_every_server(site.by_server(e["camera"] for e in site.events(started_wall))),
                                     180, every_s=2.0)
    say(f"events: from {', '.join(f'{s}: {sorted(c)}' for s, c in event_cameras.items())} ({waited:.0f} s)")


def kill_and_watch(site: Site, pod: str, lost: str) -> dict[str, Any]:
    survivor_cameras = site.all_cameras - set(site.servers[lost])
    before = {"events": {e["id"] for e in site.events(site.since)},
              "detections": [entry_id for entry_id, s in site.detection_sets(time.time() - 10) if s.camera_id in site.servers[lost]]}
    on_air = next((c["camera"] for c in reversed(site.cuts()) if c["camera"]), None)
    podman("pod", "kill", pod)
    killed_wall, killed = time.time(), time.monotonic()
    _, down_after = wait_for(f"the dashboard showing {lost}'s cameras down",
                             lambda: all(site.camera_states()[c] == "down" for c in site.servers[lost]), 60, every_s=0.25)
    server_view = {s["server"]: s["state"] for s in site.state()["servers"]}
    say(f"killed {pod}: the dashboard showed its {len(site.servers[lost])} cameras down {down_after:.1f} s later "
        f"(goal {DOWN_WITHIN_S:.0f} s); servers {server_view}")
    if down_after > DOWN_WITHIN_S:
        raise TwoServersFailed(f"{lost}'s cameras shown down only {down_after:.1f} s after the kill (goal {DOWN_WITHIN_S:.0f} s)")

    pictures_before = site.program_pictures()
    time.sleep(max(0.0, CONTINUITY_S - (time.monotonic() - killed)))
    window = time.time() - killed_wall
    sets = [s for _, s in site.detection_sets(killed_wall)]
    per_camera = {c: sum(1 for s in sets if s.camera_id == c and not s.tracked) / window for c in sorted(survivor_cameras)}
    late_from_lost = [s for s in sets if s.camera_id in site.servers[lost] and s.published_ts > killed_wall + 1]
    new_events = [e for e in site.events(killed_wall) if e["id"] not in before["events"]]
    if not new_events:  # an event needs a person to step onto a floor: give the surviving cameras a while longer
        new_events, _ = wait_for("a new event from the surviving server's cameras",
                                 lambda: [e for e in site.events(killed_wall) if e["id"] not in before["events"]], 60, every_s=2.0)
    states = site.camera_states()
    program = site.program_pictures() - pictures_before
    cuts = [c for c in site.cuts() if c["camera"] and c["time"] > killed_wall]
    cuts_after = [c for c in cuts if c["time"] > killed_wall + down_after + 2]
    survivors = ", ".join(sorted(set(site.servers) - {lost}))
    say(f"in the {window:.0f} s after the kill: {survivors} analysed "
        + ", ".join(f"{c} {fps:.1f}/s" for c, fps in per_camera.items())
        + f"; {len(new_events)} new events from {sorted({e['camera'] for e in new_events})}; "
        f"the program made {program:.0f} pictures and {len(cuts)} cuts, to {sorted({c['camera'] for c in cuts})}"
        + (f" (on air at the kill: {on_air} of {lost}, cut away {cuts[0]['time'] - killed_wall:.1f} s after)"
           if on_air in site.servers[lost] and cuts else f" (on air at the kill: {on_air})"))
    problems = [f"camera {c} of the surviving server not up ({states[c]})" for c in survivor_cameras if states[c] not in UP]
    problems += [f"camera {c} analysed nothing after the kill" for c, fps in per_camera.items() if fps <= 0]
    problems += ["detections still published for the killed server's cameras"] if late_from_lost else []
    problems += ["no new events after the kill"] if not new_events else []
    problems += [f"events after the kill from the killed server's cameras: {sorted({e['camera'] for e in new_events} - survivor_cameras)}"] \
        if {e["camera"] for e in new_events} - survivor_cameras else []
    problems += ["the program stopped"] if program <= 0 else []
    problems += [f"the program cut to a lost camera: {c['camera']}" for c in cuts_after if c["camera"] in site.servers[lost]]
    problems += [f"the program stayed on {on_air} of the killed server"] if on_air in site.servers[lost] and not cuts else []
    if problems:
        raise TwoServersFailed("; ".join(problems))
    return before


def restart_and_check(site: Site, pod: str, lost: str, before: dict[str, Any]) -> None:
    podman("pod", "start", pod)
    started_wall = time.time()
    _, back_after = wait_for(f"{lost}'s cameras up again on the dashboard",
                             lambda: all(site.camera_states()[c] in UP for c in site.servers[lost]), BACK_WITHIN_S, every_s=0.5)
    def analysed_again() -> bool:
        return {s.camera_id for _, s in site.detection_sets(started_wall) if not s.tracked} >= set(site.servers[lost])

    _, detections_after = wait_for(f"new edge detections on {lost}'s cameras", analysed_again, BACK_WITHIN_S)
    say(f"restarted {pod}: its cameras up on the dashboard {back_after:.0f} s later, new detections on all "
        f"{len(site.servers[lost])} within {back_after + detections_after:.0f} s")

    kept_sets = {entry_id for entry_id, _ in site.detection_sets(0)}
    lost_sets = [entry_id for entry_id in before["detections"] if entry_id not in kept_sets]
    kept_events = {e["id"] for e in site.events(site.since)}
    lost_events = before["events"] - kept_events
    group, caught_up = wait_for("the events service caught up with the detections stream",
                                lambda: next((g for g in site.bus.xinfo_groups(DETECTIONS_STREAM)
                                              if g["name"] == EVENTS_GROUP.encode() and g["pending"] <= 5 and not g.get("lag")), None),
                                60, every_s=1.0)
    say(f"nothing lost: {len(before['detections'])} detection sets {lost} published in the 10 s before the kill, "
        f"{len(lost_sets)} gone; {len(before['events'])} events stored before the kill, {len(lost_events)} gone; "
        f"the events service's group: {group['pending']} pending, lag {group.get('lag')} ({caught_up:.0f} s)")
    if lost_sets or lost_events:
        raise TwoServersFailed(f"lost after the restart: {len(lost_sets)} detection sets, {len(lost_events)} events")


def run(network: str, redis_password: str, dashboard_token: str, servers: dict[str, list[str]], started_wall: float,
        pod_suffix: str) -> None:
    bus = redis.Redis(host=pod_address(f"redis{pod_suffix}-redis", network), port=6379, password=redis_password,
                      socket_timeout=10)
    dashboard = httpx.Client(base_url=f"http://{pod_address(f'dashboard{pod_suffix}-dashboard', network)}:8088",
                             headers={"Authorization": f"Bearer {dashboard_token}"}, timeout=10)
    site = Site(dashboard, bus, f"compositor{pod_suffix}-compositor", servers, started_wall)
    lost = sorted(servers)[-1]
    both_servers_working(site, started_wall)
    before = kill_and_watch(site, f"{lost}{pod_suffix}", lost)
    restart_and_check(site, f"{lost}{pod_suffix}", lost, before)
