"""Serve the operator dashboard: live program, camera tiles with boxes, alerts, cloud frames, counters.

One page, no build step, updated by server-sent events from one reader of the detection,
health and alert streams. Also serves /metrics (Prometheus, every service's health-derived
series plus stream lengths and pending counts) and /health.

Binds to 127.0.0.1 by default; to serve other machines set HYBRIDCAM_DASHBOARD_HOST and
HYBRIDCAM_DASHBOARD_TOKEN, and open the page once as http://HOST:PORT/?token=TOKEN.
"""

from __future__ import annotations

import argparse

from services.dashboard.app import create_app
from services.dashboard.cloud_frames import cloud_frame_browser
from services.dashboard.settings import DashboardSettings
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, runs_for_duration=False)
    parser.add_argument("--host", help="address to bind (default: HYBRIDCAM_DASHBOARD_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve (default: HYBRIDCAM_DASHBOARD_PORT, 8088)")
    parser.add_argument("--program-h264-url",
                        help="the compositor's encoded program for the WebRTC view (default: HYBRIDCAM_DASHBOARD_PROGRAM_H264_URL)")
    parser.add_argument("--program-url", help="the compositor's MJPEG stream URL (default: HYBRIDCAM_DASHBOARD_PROGRAM_URL)")


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("dashboard", DashboardSettings, args, dashboard_host=args.host, dashboard_port=args.port,
                                dashboard_program_url=args.program_url, dashboard_program_h264_url=args.program_h264_url) as service:
        settings, site, log = service.settings, service.site, service.log
        cloud = None
        if settings.cloud_configured:
            cloud = cloud_frame_browser(settings.dashboard_frames_table, settings.dashboard_frames_bucket, settings.dashboard_region)
        else:
            log.info("no cloud frames panel: set HYBRIDCAM_DASHBOARD_FRAMES_TABLE and HYBRIDCAM_DASHBOARD_FRAMES_BUCKET")
        app = create_app(settings, site, cloud)
        log.info("site %s (%d cameras) on http://%s:%d/%s", site.site, len(site.cameras), settings.dashboard_host,
                 settings.dashboard_port, "  (token required)" if settings.token else "")
        service.close_with(lambda: log.info("stopped"))
        import uvicorn

        # uvicorn handles SIGINT/SIGTERM itself while it serves (graceful shutdown of the open pages).
        uvicorn.run(app, host=settings.dashboard_host, port=settings.dashboard_port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=2)
    return 0
