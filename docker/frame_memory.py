"""Hold the shared-memory folder the frame rings live in, and check it is big enough for the site.

In docker-compose.yml the `frames` service owns the IPC namespace (`ipc: shareable`, `shm_size`)
and capture, edge_infer, sampler and compositor join it (`ipc: "service:frames"`), so they all see
one /dev/shm. This process does nothing else, so it never restarts on its own; capture can crash
and come back without cutting the consumers off from its new rings (a container that joined
another's IPC namespace keeps that container's /dev/shm until it is itself restarted).

At start it prints what the site's rings need (shared.frame_ring.ring_bytes per camera) and what
/dev/shm holds, then serves GET /health: "ok" while the folder can hold every ring, "failing"
(HTTP 503) when it is too small, so the services that need it are not started.

    python docker/frame_memory.py --recommend   # print the shm_size to use for the site file
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from pathlib import Path

from services.capture.settings import CaptureSettings
from shared.errors import ConfigError
from shared.frame_ring import ring_bytes
from shared.health import HealthServer
from shared.settings import load_settings
from shared.site_config import load_site

MIB = 1024 * 1024
HEADROOM_BYTES = 64 * MIB  # Python's own semaphores and a capture restart's overlap fit in this


def required_bytes(site_file: Path, slots: int) -> int:
    """Bytes of shared memory every camera's ring of the site takes together."""
    return sum(ring_bytes(camera.width, camera.height, slots) for camera in load_site(site_file).resolved())


def recommended_shm_size(required: int) -> str:
    """The shm_size to give Docker: the rings plus headroom, in whole MiB."""
    return f"{math.ceil((required + HEADROOM_BYTES) / MIB)}m"


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(size, free) of the file system holding ``folder``."""
    stats = os.statvfs(folder)
    return stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/dev/shm"), help="the shared-memory folder (default /dev/shm)")
    parser.add_argument("--recommend", action="store_true", help="print the shm_size the site needs and exit")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(CaptureSettings)
        required = required_bytes(settings.site_file, settings.capture_ring_slots)
    except ConfigError as error:
        print(f"frame memory: {error}", file=sys.stderr)
        return 2
    recommended = recommended_shm_size(required)
    if args.recommend:
        print(recommended)
        return 0
    size, _ = folder_bytes(args.folder)
    print(f"frame memory: site {settings.site_file} needs {required / MIB:.1f} MiB of rings "
          f"({settings.capture_ring_slots} slots per camera); {args.folder} holds {size / MIB:.1f} MiB", flush=True)
    if size < required:
        print(f"frame memory: {args.folder} is too small: set STACK_FRAME_MEMORY={recommended} (shm_size)", flush=True)

    def snapshot() -> dict:
        total, free = folder_bytes(args.folder)
        return {"service": "frame_memory", "state": "ok" if total >= required else "failing",
                "required_bytes": required, "size_bytes": total, "free_bytes": free, "recommended_shm_size": recommended}

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    health = HealthServer(settings.health_port, snapshot).start() if settings.health_port else None
    if health:
        print(f"frame memory: GET /health on port {health.port}", flush=True)
    stop.wait()
    if health:
        health.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
