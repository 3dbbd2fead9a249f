"""Cut one FullHD program from all cameras of the site, directed by the fused edge and cloud detections.

Reads frames through the capture's shared-memory rings (frames:<camera> streams) and
detection sets from the 'detections' stream; writes any of: MP4 segments, HLS, an
MJPEG-over-HTTP preview, an RTMP push, and always an edit decision list (JSON lines)
that explains every cut. Settings: HYBRIDCAM_COMPOSITOR_* (see docs/compositor.md).
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from services.compositor.outputs.program_output import ProgramOutput
from services.compositor.program import Program
from services.compositor.settings import CompositorSettings
from shared.health import HealthServer
from shared.logs import configure_logging
from shared.metrics import service_registry
from shared.settings import load_settings
from shared.site_config import load_site
from shared.stream_bus import StreamBus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    parser.add_argument("--output-dir", type=Path, help="folder for recordings, HLS and the EDL (default: HYBRIDCAM_COMPOSITOR_OUTPUT_DIR)")
    parser.add_argument("--outputs", help="comma-separated: mp4, hls, mjpeg, rtmp (default: HYBRIDCAM_COMPOSITOR_OUTPUTS)")
    parser.add_argument("--rtmp-url", help="rtmp://host/app/key for the rtmp output")
    parser.add_argument("--preview-port", type=int,
                        help="serve the MJPEG preview on this port (adds the mjpeg output; default: HYBRIDCAM_COMPOSITOR_MJPEG_PORT)")
    parser.add_argument("--fps", type=float, help="program frame rate (default: HYBRIDCAM_COMPOSITOR_FPS)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until stopped)")
    parser.add_argument("--health-port", type=int, help="serve GET /health on this port")


def build_outputs(settings: CompositorSettings) -> list[ProgramOutput]:
    outputs: list[ProgramOutput] = []
    folder = settings.compositor_output_dir
    for name in settings.output_names:
        if name == "mp4":
            from services.compositor.outputs.mp4_segments import Mp4Segments

            outputs.append(Mp4Segments(folder / "recordings", settings.compositor_segment_s))
        elif name == "hls":
            from services.compositor.outputs.hls import HlsOutput

            outputs.append(HlsOutput(folder / "hls", settings.compositor_hls_segment_s, settings.compositor_hls_list_size))
        elif name == "mjpeg":
            from services.compositor.outputs.mjpeg_http import MjpegHttpPreview

            hls_folder = folder / "hls" if "hls" in settings.output_names else None
            outputs.append(MjpegHttpPreview(settings.compositor_mjpeg_port, settings.compositor_mjpeg_fps, hls_folder=hls_folder))
        elif name == "rtmp":
            from services.compositor.outputs.rtmp import RtmpPush

            outputs.append(RtmpPush(settings.compositor_rtmp_url))
    return outputs


def run(args: argparse.Namespace) -> int:

    settings = load_settings(
        CompositorSettings,
        site_file=args.site,
        redis_url=args.redis_url,
        compositor_output_dir=args.output_dir,
        compositor_outputs=args.outputs,
        compositor_rtmp_url=args.rtmp_url,
        compositor_fps=args.fps,
        health_port=args.health_port,
        compositor_mjpeg_port=args.preview_port,
    )
    if args.preview_port is not None and "mjpeg" not in settings.output_names:
        settings = settings.model_copy(update={"compositor_outputs": f"{settings.compositor_outputs},mjpeg"})
    log = configure_logging("compositor", settings.log_level)
    site = load_site(settings.site_file)
    cameras = site.resolved()
    bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
    try:
        outputs = build_outputs(settings)
    except OSError as error:
        from shared.errors import ConfigError

        raise ConfigError(f"cannot open a program output: {error}") from None
    program = Program(settings, cameras, bus, outputs)
    log.info(
        "site %s: %d camera(s) into a %dx%d program at %g fps from Redis at %s",
        site.site, len(cameras), settings.compositor_width, settings.compositor_height, settings.compositor_fps, settings.redis_url,
    )
    log.info("  director: wide shot %s, min shot %.1f s, confirm %.1f s, cooldown %.1f s", program.director.wide,
             settings.compositor_min_shot_s, settings.compositor_confirm_s, settings.compositor_cooldown_s)
    for output in outputs:
        log.info("  output %s", output.describe())
    log.info("  edit decision list -> %s", settings.compositor_output_dir / "edit-decision-list.jsonl")
    health = None
    if settings.health_port:
        health = HealthServer(settings.health_port, lambda: {"service": "compositor", "state": "ok", "on_air": program.director.current,
                                                             "pictures": program.stats.pictures},
                              metrics=service_registry(lambda: [program.health()])).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: program.stop.set())
    stats = program.run(args.duration)
    log.info("program ended: %d pictures in %.1f s (%.1f fps), %d cuts, %d ticks skipped, %d frames lost",
             stats.pictures, stats.ended - stats.started, stats.fps, stats.cuts, stats.skipped_ticks, stats.frame_drops)
    if health is not None:
        health.stop()
    bus.close()
    return 0
