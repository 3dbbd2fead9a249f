"""Cut one FullHD program from all cameras of the site, directed by the fused edge and cloud detections.

Reads frames through the capture's shared-memory rings (frames:<camera> streams) and
detection sets from the 'detections' stream; writes any of: MP4 segments, HLS, an
MJPEG-over-HTTP preview, an RTMP push, and always an edit decision list (JSON lines)
that explains every cut. Settings: HYBRIDCAM_COMPOSITOR_* (see docs/compositor.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.compositor.outputs.program_output import ProgramOutput
from services.compositor.outputs.recording_retention import GB, RetentionPolicy
from services.compositor.program import Program
from services.compositor.settings import CompositorSettings
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.settings import redacted_url
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
    parser.add_argument("--layout", choices=["program", "multiview", "both"],
                        help="program (the cut), multiview (every camera, the on-air one marked) or both from the same frames "
                             "(the multiview then goes to OUTPUT_DIR/multiview; default: HYBRIDCAM_COMPOSITOR_LAYOUT)")


def retention_of(settings: CompositorSettings) -> RetentionPolicy:
    return RetentionPolicy(max_age_s=settings.compositor_retention_hours * 3600.0,
                           max_bytes=int(settings.compositor_retention_gb * GB),
                           min_free_bytes=int(settings.compositor_min_free_gb * GB))


def build_outputs(settings: CompositorSettings) -> list[ProgramOutput]:
    outputs: list[ProgramOutput] = []
    folder = settings.compositor_output_dir
    for name in settings.output_names:
        if name == "mp4":
            from services.compositor.outputs.mp4_segments import Mp4Segments

            outputs.append(Mp4Segments(folder / "recordings", settings.compositor_segment_s, retention_of(settings)))
        elif name == "hls":
            from services.compositor.outputs.hls import HlsOutput

            outputs.append(HlsOutput(folder / "hls", settings.compositor_hls_segment_s, settings.compositor_hls_list_size))
        elif name == "mjpeg":
            from services.compositor.outputs.mjpeg_http import MjpegHttpPreview

            hls_folder = folder / "hls" if "hls" in settings.output_names else None
            outputs.append(MjpegHttpPreview(settings.compositor_mjpeg_port, settings.compositor_mjpeg_fps, hls_folder=hls_folder,
                                            host=settings.compositor_output_host,
                                            max_clients=settings.compositor_output_max_clients))
        elif name == "h264":
            from services.compositor.outputs.h264_http import H264HttpStream

            outputs.append(H264HttpStream(settings.compositor_h264_port, host=settings.compositor_output_host,
                                          max_clients=settings.compositor_output_max_clients))
        elif name == "rtmp":
            from services.compositor.outputs.rtmp import RtmpPush

            outputs.append(RtmpPush(settings.compositor_rtmp_url))
    return outputs


def multiview_settings(settings: CompositorSettings) -> CompositorSettings:
    """With --layout both the multiview goes to <output dir>/multiview as MP4 and/or HLS, and to its own MJPEG preview
    (HYBRIDCAM_COMPOSITOR_MULTIVIEW_MJPEG_PORT) when the program has one (the dashboard shows whichever its
    DASHBOARD_PROGRAM_URL names); RTMP and the WebRTC feed stay the program's."""
    names = ",".join(n for n in settings.output_names if n in ("mp4", "hls", "mjpeg")) or "hls"
    return settings.model_copy(update={"compositor_output_dir": settings.compositor_output_dir / "multiview", "compositor_outputs": names,
                                       "compositor_mjpeg_port": settings.compositor_multiview_mjpeg_port})


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start(
        "compositor", CompositorSettings, args,
        compositor_output_dir=args.output_dir,
        compositor_outputs=args.outputs,
        compositor_rtmp_url=args.rtmp_url,
        compositor_fps=args.fps,
        compositor_mjpeg_port=args.preview_port,
        compositor_layout=args.layout,
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
            multiview_outputs = build_outputs(multiview_settings(settings)) if settings.compositor_layout == "both" else []
        except OSError as error:
            raise ConfigError(f"cannot open a program output: {error}") from None
        program = Program(settings, cameras, bus, outputs, multiview_outputs)
        service.on_stop(program.stop.set)
        log.info(
            "site %s: %d camera(s) into a %dx%d program at %g fps from Redis at %s",
            site.site, len(cameras), settings.compositor_width, settings.compositor_height, settings.compositor_fps, redacted_url(settings.redis_url),
        )
        log.info("  director: %s, wide shot %s, shots %.0f-%.0f s (target %.0f s), program %.2f s behind capture, layout %s",
                 settings.compositor_director, program.director.wide, settings.compositor_min_shot_s, settings.compositor_max_shot_s,
                 settings.compositor_target_shot_s, settings.compositor_program_delay_s, settings.compositor_layout)
        for output in multiview_outputs:
            log.info("  multiview output %s", output.describe())
        for output in outputs:
            log.info("  output %s", output.describe())
        log.info("  edit decision list -> %s", settings.compositor_output_dir / "edit-decision-list.jsonl")
        if settings.compositor_upload_recordings:
            log.info("  at the end: recordings -> s3://%s/recordings/%s/", settings.compositor_upload_bucket, site.site)
        service.serve_health(lambda: {"service": "compositor", "state": program.health_state()[0],
                                      "message": program.health_state()[1],
                                      "on_air": program.director.current, "pictures": program.stats.pictures},
                             service_registry(lambda: [program.health()]))
        service.watch_progress(program.progress)
        stats = program.run(args.duration)
        log.info("program ended: %d pictures in %.1f s (%.1f fps), %d cuts, %d ticks skipped, %d frames lost",
                 stats.pictures, stats.ended - stats.started, stats.fps, stats.cuts, stats.skipped_ticks, stats.frame_drops)
        if settings.compositor_upload_recordings:
            upload_after_run(settings, site.site, log)
    return 0


def upload_after_run(settings: CompositorSettings, site: str, log: logging.Logger) -> None:
    """The program has stopped and its segments are closed: send them to the bucket (never fails the run)."""
    from services.compositor.outputs.recording_upload import s3_client, upload_recordings

    summary = upload_recordings(s3_client(settings.compositor_upload_region), settings.compositor_output_dir / "recordings",
                                settings.compositor_upload_bucket, site, log.info)
    if not summary.ok:
        log.warning("%s", summary.failure)
