"""``hybridcam demo --rtsp``: the demo's cameras are real RTSP cameras, served on this machine.

The project's RTSP server (GStreamer's, ``devstack/rtsp_server.py``) serves the road footage the
project carries to every camera of the site file whose source is ``rtsp://127.0.0.1:8554/<mount>``
(``config/site.rtsp.yaml`` by default). When port 8554 is taken it uses a free one and writes the
site with the new addresses into the run folder.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import yaml

from devstack.rtsp_footage import road_cameras
from devstack.rtsp_server import LocalRtspServer, RtspMount
from devstack.servers import free_port

RTSP_SITE = Path(__file__).resolve().parents[1] / "config" / "site.rtsp.yaml"
DEMO_PORT = 8554


def start_rtsp_cameras(site_file: Path, run_dir: Path) -> tuple[Path, LocalRtspServer]:
    """Start the RTSP server for the site's local cameras; returns the site file to run and the server."""
    site = yaml.safe_load(site_file.read_text())
    footage = road_cameras()
    wanted: dict[str, RtspMount] = {}
    for camera in site.get("cameras", []):
        url = urlparse(str(camera.get("source", "")))
        mount = url.path.strip("/")
        if url.scheme == "rtsp" and url.hostname == "127.0.0.1" and url.port == DEMO_PORT and mount in footage:
            path, codec = footage[mount]
            wanted[mount] = RtspMount(mount, codec, (path,))
    if not wanted:
        raise SystemExit(f"--rtsp: no camera of {site_file} uses rtsp://127.0.0.1:{DEMO_PORT}/<one of {', '.join(footage)}>")
    port = free_port(DEMO_PORT)
    server = LocalRtspServer(list(wanted.values()), port=port, log_path=run_dir / "logs" / "rtsp-server.log")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    server.start()
    if port == DEMO_PORT:
        return site_file, server
    for camera in site["cameras"]:
        camera["source"] = str(camera.get("source", "")).replace(f"127.0.0.1:{DEMO_PORT}/", f"127.0.0.1:{port}/")
    moved = run_dir / site_file.name
    moved.write_text(yaml.safe_dump(site, sort_keys=False))
    return moved, server
