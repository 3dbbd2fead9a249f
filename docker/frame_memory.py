"""Hold the shared-memory folder the frame rings live in, and check it is big enough for the site.

In docker-compose.yml the `frames` service owns the IPC namespace (`ipc: shareable`, `shm_size`)
and capture, edge_infer, sampler and compositor join it (`ipc: "service:frames"`), so they all see
one /dev/shm. This process does nothing else, so it never restarts on its own; capture can crash
and come back without cutting the consumers off from its new rings (a container that joined
another's IPC namespace keeps that container's /dev/shm until it is itself restarted).

At start it prints what the site's rings need (shared.frame_ring.ring_bytes per camera) and what
/dev/shm holds, then serves GET /health with the folder's size and free space: "ok" while the
folder can hold every ring and still has room to replace the largest one; "degraded" when the
rings fit but a ring replaced on a capture restart with a new camera layout would not; "failing"
(HTTP 503) when the folder is too small, or too full to create the rings still missing, so the
services that need it are not started.

Headroom: a capture restart takes over its rings when their layout still fits (no new memory),
but a camera whose resolution or slot count changed gets a new ring while readers may hold the
old one for up to a second; the recommended size leaves room for every ring twice.

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
from shared.frame_ring import ring_bytes, ring_name, ring_namespace, ring_slots_for
from shared.health import HealthServer
from shared.settings import load_settings
from shared.site_config import load_site

MIB = 1024 * 1024
SPARE_BYTES = 16 * MIB  # Python's own semaphores and small blocks


def ring_sizes(site_file: Path, slots: int, redis_url: str, ring_s: float = 1.0) -> dict[str, int]:
    """Ring name -> bytes, for every camera of the site (the stack of that Redis); ``slots`` 0 sizes each
    camera's ring from its rate (``ring_s`` seconds, as capture does)."""
    namespace = ring_namespace(redis_url)
    return {ring_name(camera.id, namespace): ring_bytes(camera.width, camera.height, slots or ring_slots_for(camera.fps, ring_s))
            for camera in load_site(site_file).resolved()}


def required_bytes(site_file: Path, slots: int = 0, redis_url: str = "", ring_s: float = 1.0) -> int:
    """Bytes of shared memory every camera's ring of the site takes together."""
    return sum(ring_sizes(site_file, slots, redis_url, ring_s).values())


def recommended_shm_size(required: int) -> str:
    """The shm_size to give Docker: every ring twice (restart headroom) plus spare, in whole MiB."""
    return f"{math.ceil((2 * required + SPARE_BYTES) / MIB)}m"


def memory_state(folder: Path, rings: dict[str, int]) -> dict:
    """Health of the shared-memory folder for these rings: size, free space, rings present."""
    total, free = folder_bytes(folder)
    present = {name for name, size in rings.items() if _file_size(folder / name) == size}
    missing = sum(size for name, size in rings.items() if name not in present)
    largest = max(rings.values(), default=0)
    if total < sum(rings.values()) or free < missing:
        state, message = "failing", f"{free / MIB:.1f} MiB free, {missing / MIB:.1f} MiB of rings still to create"
    elif free - missing < largest:
        state, message = "degraded", f"{(free - missing) / MIB:.1f} MiB free once all rings exist: a replaced ring ({largest / MIB:.1f} MiB) would not fit"
    else:
        state, message = "ok", ""
    return {"state": state, "message": message, "size_bytes": total, "free_bytes": free,
            "rings_present": len(present), "rings_expected": len(rings)}


def _slots_text(settings: CaptureSettings) -> str:
    if settings.capture_ring_slots:
        return f"{settings.capture_ring_slots} slots per camera"
    return f"{settings.capture_ring_s:g} s of frames per camera at its rate"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


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
        rings = ring_sizes(settings.site_file, settings.capture_ring_slots, settings.redis_url, settings.capture_ring_s)
        required = sum(rings.values())
    except ConfigError as error:
        print(f"frame memory: {error}", file=sys.stderr)
        return 2
    recommended = recommended_shm_size(required)
    if args.recommend:
        print(recommended)
        return 0
    size, _ = folder_bytes(args.folder)
    print(f"frame memory: site {settings.site_file} needs {required / MIB:.1f} MiB of rings "
          f"({_slots_text(settings)}); {args.folder} holds {size / MIB:.1f} MiB", flush=True)
    if size < required:
        print(f"frame memory: {args.folder} is too small: set STACK_FRAME_MEMORY={recommended} (shm_size)", flush=True)
    elif size < 2 * required:
        print(f"frame memory: {args.folder} holds the rings but no restart headroom: STACK_FRAME_MEMORY={recommended} "
              "is recommended", flush=True)

    def snapshot() -> dict:
        return {"service": "frame_memory", **memory_state(args.folder, rings),
                "required_bytes": required, "recommended_shm_size": recommended}

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
