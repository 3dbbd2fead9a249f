"""Fault scenario 2: kill -9 capture while the compositor and the dashboard read its frame rings.

Every service runs as a real process in a private, size-limited /dev/shm (a tmpfs holding the
site's rings plus 1 MiB, as a container's shm_size would), so a restart that made a second set
of rings next to the ones the readers still map would not fit: before the fix, capture's first
write died with SIGBUS (exit 135) and it crash-looped. Then a clean stop and a restart with a new
camera layout: the readers must let go of the old rings for the new ones to fit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.servers import free_port
from shared.frame_ring import ring_bytes
from shared.stream_bus import StreamBus, frames_stream
from tests.faults.report import FaultResult, record_fault
from tests.fixtures.pipeline import write_site

REPO_ROOT = Path(__file__).resolve().parents[2]
CAMERAS = [
    {"id": "wide", "role": "master", "source": "synthetic"},
    {"id": "centre", "role": "slave", "source": "synthetic", "covers": {"master": "wide", "region": [0.25, 0.25, 0.75, 0.75]}},
]
WIDTH, HEIGHT, SLOTS = 640, 360, 4
TOKEN = "fault-scenario-token"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("nsenter") is None or os.geteuid() != 0,
    reason="needs Linux, root, unshare and nsenter (a private size-limited /dev/shm)",
)


class PrivateShm:
    """A mount namespace whose /dev/shm is a tmpfs of a given size; commands run inside it."""

    def __init__(self, size_bytes: int) -> None:
        kib = size_bytes // 1024
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs -o size={kib}k tmpfs /dev/shm && echo ready && exec sleep 3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.kill()
            pytest.skip(f"cannot mount a private /dev/shm here: {self.holder.stderr.read() if self.holder.stderr else ''}")

    def prefix(self) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--"]

    def free_bytes(self) -> int:
        out = subprocess.run([*self.prefix(), "df", "-B1", "--output=avail", "/dev/shm"], capture_output=True, text=True)
        return int(out.stdout.split()[-1])

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


class Services:
    def __init__(self, shm: PrivateShm, env: dict[str, str], log_dir: Path) -> None:
        self.shm, self.env, self.log_dir = shm, env, log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.started = 0

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.started += 1
        log = (self.log_dir / f"{name}-{self.started}.log").open("wb")
        process = subprocess.Popen([*self.shm.prefix(), sys.executable, "-m", "hybridcam", *args],
                                   env={**self.env, **(env or {})}, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def service_pid(process: subprocess.Popen) -> int:
    """nsenter execs the command, so the Popen pid is the service's own."""
    return process.pid


def mapped_rings(pid: int) -> tuple[set[str], set[str]]:
    """(rings mapped, rings mapped that were unlinked) by process ``pid``."""
    live, deleted = set(), set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if "/dev/shm/hybridcam_" in line:
            name = line.split("/dev/shm/", 1)[1]
            (deleted if name.endswith("(deleted)") else live).add(name.split()[0])
    return live, deleted


def wait_for(condition, timeout_s: float, interval_s: float = 0.2) -> float | None:
    """Seconds until ``condition()`` held, None if it did not within ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(interval_s)
    return None


@pytest.fixture()
def stack(redis_server, tmp_path: Path) -> Iterator[tuple[Services, PrivateShm, StreamBus]]:
    rings = len(CAMERAS) * ring_bytes(WIDTH, HEIGHT, SLOTS)
    shm = PrivateShm(rings + 1024 * 1024)  # no room for a second set of rings
    (tmp_path / "logs").mkdir()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HYBRIDCAM_REDIS_URL": redis_server.url,
        "HYBRIDCAM_SITE_FILE": str(write_site(tmp_path / "site.yaml", fps=8, width=WIDTH, height=HEIGHT, people=3, cameras=CAMERAS)),
        "HYBRIDCAM_CAPTURE_RING_SLOTS": str(SLOTS),
        "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mjpeg",
        "HYBRIDCAM_COMPOSITOR_FPS": "5",
        "HYBRIDCAM_COMPOSITOR_WIDTH": "640",
        "HYBRIDCAM_COMPOSITOR_HEIGHT": "360",
        "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(tmp_path / "program"),
        "HYBRIDCAM_DASHBOARD_TOKEN": TOKEN,
    }
    services = Services(shm, env, tmp_path / "logs")
    bus = StreamBus(redis_server.url)
    try:
        yield services, shm, bus
    finally:
        services.stop_all()
        shm.close()


def _frames_after(bus: StreamBus, camera_id: str, after_ts: float) -> bool:
    newest = bus.redis.xrevrange(frames_stream(camera_id), count=1)
    return bool(newest) and int(newest[0][0].split(b"-")[0]) / 1000.0 > after_ts


def _pictures_served(base_url: str) -> bool:
    for camera in CAMERAS:
        try:
            answer = httpx.get(f"{base_url}/api/cameras/{camera['id']}/snapshot.jpg",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        except httpx.HTTPError:
            return False
        if answer.status_code != 200 or not answer.content.startswith(b"\xff\xd8"):
            return False
    return True


def test_kill_capture_while_compositor_and_dashboard_read(stack) -> None:
    services, shm, bus = stack
    dashboard_port = free_port()
    base_url = f"http://127.0.0.1:{dashboard_port}"
    capture = services.start("capture", "capture")
    compositor = services.start("compositor", "compositor", "--preview-port", str(free_port()))
    dashboard = services.start("dashboard", "dashboard", "--port", str(dashboard_port))
    assert wait_for(lambda: _pictures_served(base_url), 60), f"dashboard never served both cameras\n{services.logs()}"
    assert wait_for(lambda: bool(mapped_rings(service_pid(compositor))[0]), 30), f"compositor reads no ring\n{services.logs()}"
    readers = {"compositor": service_pid(compositor), "dashboard": service_pid(dashboard)}

    # 1. kill -9 while both read, restart at once (as a restart policy would).
    capture.send_signal(signal.SIGKILL)
    capture.wait(timeout=10)
    restarted_at = time.time()
    capture = services.start("capture", "capture")
    recovered = wait_for(lambda: all(_frames_after(bus, c["id"], restarted_at) for c in CAMERAS)
                         and _pictures_served(base_url), 30)
    assert recovered is not None, f"frames did not flow again after the restart\n{services.logs()}"
    time.sleep(max(0.0, 5.0 - (time.time() - restarted_at)))
    assert capture.poll() is None, f"capture exited {capture.returncode} after its restart (135 = SIGBUS)\n{services.logs()}"
    stale_after_kill = {name: sorted(mapped_rings(pid)[1]) for name, pid in readers.items()}
    assert not any(stale_after_kill.values()), f"readers still map deleted rings 5 s after the restart: {stale_after_kill}"

    # 2. clean stop, then a restart with a new camera layout: the new rings only fit once every
    #    reader has let go of the old ones (the generation marks them retired).
    stopped_at = time.monotonic()
    capture.send_signal(signal.SIGTERM)
    capture.wait(timeout=15)
    released = wait_for(lambda: not any(mapped_rings(pid)[0] | mapped_rings(pid)[1] for pid in readers.values()), 10)
    assert released is not None, f"readers kept the retired rings: { {n: mapped_rings(p) for n, p in readers.items()} }"
    released = time.monotonic() - stopped_at  # from the stop signal, not from capture's exit
    smaller_site = write_site(Path(services.env["HYBRIDCAM_SITE_FILE"]).with_name("site-small.yaml"), fps=8,
                              width=WIDTH // 2, height=HEIGHT // 2, people=3, cameras=CAMERAS)
    relayout_at = time.time()
    capture = services.start("capture", "capture", env={"HYBRIDCAM_SITE_FILE": str(smaller_site)})
    relaid = wait_for(lambda: all(_frames_after(bus, c["id"], relayout_at) for c in CAMERAS) and _pictures_served(base_url), 30)
    assert relaid is not None, f"frames did not flow after the new layout\n{services.logs()}"
    time.sleep(max(0.0, 5.0 - (time.time() - relayout_at)))
    assert capture.poll() is None, f"capture exited {capture.returncode} with the new layout\n{services.logs()}"
    stale_after_relayout = {name: sorted(mapped_rings(pid)[1]) for name, pid in readers.items()}
    assert not any(stale_after_relayout.values()), f"readers map deleted rings after the new layout: {stale_after_relayout}"
    assert compositor.poll() is None and dashboard.poll() is None, services.logs()

    record_fault(FaultResult(
        scenario="2 kill -9 capture",
        injected="kill -9 capture while compositor + dashboard read (shm = rings + 1 MiB), restart; then new layout",
        recovery_s=round(recovered, 1),
        expected=len(CAMERAS) * 2,  # both cameras flowing again, after the kill and after the new layout
        seen=len(CAMERAS) * 2,
        lost=0,
        duplicated=0,
        restarts=0,
        notes=(f"frames and dashboard pictures back {recovered:.1f} s after the restart, {relaid:.1f} s after the "
               f"new layout; readers let go of retired rings in {released:.1f} s; 0 deleted rings mapped after 5 s; "
               f"/dev/shm free {shm.free_bytes() // 1024} KiB"),
    ))
