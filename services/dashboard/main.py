"""Serve the operator dashboard: live program, camera tiles with boxes, alerts, cloud frames, counters.

One page, no build step, updated by server-sent events from one reader of the detection,
health and alert streams. Also serves /metrics (Prometheus, every service's health-derived
series plus stream lengths and pending counts) and /health.

Binds to 127.0.0.1 by default; to serve other machines set HYBRIDCAM_DASHBOARD_HOST and
HYBRIDCAM_DASHBOARD_TOKEN, and open the page once as http://HOST:PORT/?token=TOKEN.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.dashboard.app import create_app
from services.dashboard.cloud_frames import cloud_frame_browser
from services.dashboard.settings import DashboardSettings
from shared.logs import configure_logging
from shared.settings import load_settings
from shared.site_config import load_site


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    parser.add_argument("--host", help="address to bind (default: HYBRIDCAM_DASHBOARD_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve (default: HYBRIDCAM_DASHBOARD_PORT, 8088)")
    parser.add_argument("--program-url", help="the compositor's MJPEG stream URL (default: HYBRIDCAM_DASHBOARD_PROGRAM_URL)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        DashboardSettings,
        site_file=args.site,
        redis_url=args.redis_url,
        dashboard_host=args.host,
        dashboard_port=args.port,
        dashboard_program_url=args.program_url,
    )
    log = configure_logging("dashboard", settings.log_level)
    site = load_site(settings.site_file)
    cloud = None
    if settings.cloud_configured:
        cloud = cloud_frame_browser(settings.dashboard_frames_table, settings.dashboard_frames_bucket, settings.dashboard_region)
    else:
        log.info("no cloud frames panel: set HYBRIDCAM_DASHBOARD_FRAMES_TABLE and HYBRIDCAM_DASHBOARD_FRAMES_BUCKET")
    app = create_app(settings, site, cloud)
    log.info("site %s (%d cameras) on http://%s:%d/%s", site.site, len(site.cameras), settings.dashboard_host,
             settings.dashboard_port, "  (token required)" if settings.token else "")
    import uvicorn

    uvicorn.run(app, host=settings.dashboard_host, port=settings.dashboard_port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=2)
    logging.getLogger("dashboard").info("stopped")
    return 0
