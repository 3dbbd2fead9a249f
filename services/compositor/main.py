"""Cut one FullHD program from all cameras of the site, directed by the fused edge and cloud detections.

Reads frames through the capture's shared-memory rings (frames:<camera> streams) and
detection sets from the 'detections' stream; writes any of: MP4 segments, HLS, an
MJPEG-over-HTTP preview, an RTMP push, and always an edit decision list (JSON lines)
that explains every cut. Settings: HYBRIDCAM_COMPOSITOR_* (see docs/compositor.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.compositor.outputs.program_output import ProgramOutput
from services.compositor.program import Program
from services.compositor.settings import CompositorSettings
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.stream_bus import StreamBus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--output-dir", type=Path, help="folder for recordings, HLS and the EDL (default: HYBRIDCAM_COMPOSITOR_OUTPUT_DIR)")
    parser.add_argument("--outputs", help="comma-separated: mp4, hls, mjpeg, rtmp, h264 (default: HYBRIDCAM_COMPOSITOR_OUTPUTS)")
    parser.add_argument("--rtmp-url", help="rtmp://host/app/key for the rtmp output")
    parser.add_argument("--preview-port", type=int,
                        help="serve the MJPEG preview on this port (adds the mjpeg output; default: HYBRIDCAM_COMPOSITOR_MJPEG_PORT)")
    parser.add_argument("--h264-port", type=int,
                        help="serve the encoded program for the dashboard's WebRTC view on this port (adds the h264 output)")
    parser.add_argument("--fps", type=float, help="program frame rate (default: HYBRIDCAM_COMPOSITOR_FPS)")


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

            outputs.append(MjpegHttpPreview(settings.compositor_mjpeg_port, settings.compositor_mjpeg_fps))
        elif name == "h264":
            from services.compositor.outputs.h264_http import H264HttpStream

            outputs.append(H264HttpStream(settings.compositor_h264_port))
        elif name == "rtmp":
            from services.compositor.outputs.rtmp import RtmpPush

            outputs.append(RtmpPush(settings.compositor_rtmp_url))
    return outputs


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start(
        "compositor", CompositorSettings, args,
        compositor_output_dir=args.output_dir,
        compositor_outputs=args.outputs,
        compositor_rtmp_url=args.rtmp_url,
        compositor_fps=args.fps,
        compositor_mjpeg_port=args.preview_port,
        compositor_h264_port=args.h264_port,
    ) as service:
        settings, site, log = service.settings, service.site, service.log
        if args.preview_port is not None and "mjpeg" not in settings.output_names:
            settings = settings.model_copy(update={"compositor_outputs": f"{settings.compositor_outputs},mjpeg"})
        if args.h264_port is not None and "h264" not in settings.output_names:
            settings = settings.model_copy(update={"compositor_outputs": f"{settings.compositor_outputs},h264"})
        cameras = site.resolved()
        bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
        service.close_with(bus.close)
        try:
            outputs = build_outputs(settings)
        except OSError as error:
            raise ConfigError(f"cannot open a program output: {error}") from None
        program = Program(settings, cameras, bus, outputs)
        service.on_stop(program.stop.set)
        log.info(
            "site %s: %d camera(s) into a %dx%d program at %g fps from Redis at %s",
            site.site, len(cameras), settings.compositor_width, settings.compositor_height, settings.compositor_fps, settings.redis_url,
        )
        log.info("  director: wide shot %s, min shot %.1f s, confirm %.1f s, cooldown %.1f s", program.director.wide,
                 settings.compositor_min_shot_s, settings.compositor_confirm_s, settings.compositor_cooldown_s)
        for output in outputs:
            log.info("  output %s", output.describe())
        log.info("  edit decision list -> %s", settings.compositor_output_dir / "edit-decision-list.jsonl")
        service.serve_health(lambda: {"service": "compositor", "state": "ok", "on_air": program.director.current,
                                      "pictures": program.stats.pictures},
                             service_registry(lambda: [program.health()]))
        stats = program.run(args.duration)
        log.info("program ended: %d pictures in %.1f s (%.1f fps), %d cuts, %d ticks skipped, %d frames lost",
                 stats.pictures, stats.ended - stats.started, stats.fps, stats.cuts, stats.skipped_ticks, stats.frame_drops)
    return 0
