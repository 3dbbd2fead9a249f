"""Run the whole site on this machine and watch it live.

Starts a real redis-server on a free port (unless HYBRIDCAM_REDIS_URL points at a running
one), then each service as its own process, exactly as a deployment runs them: capture on
the synthetic 6-camera scene, edge inference on the CPU, and, where they are installed,
the cloud path against a local AWS emulator and the compositor's program output. Service
logs go to files under the run folder; the terminal shows one live table and a summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from devstack.servers import LocalRedis, free_port
from devstack.terminal_dashboard import TerminalDashboard
from shared.settings import DEFAULT_SITE_FILE, load_settings, redacted_url
from shared.site_config import load_site
from shared.stream_bus import StreamBus

console = Console()


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def last_lines(self, count: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])
        except OSError:
            return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, default=None, help=f"site file (default: {DEFAULT_SITE_FILE.name}, 6 synthetic cameras)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run; 0 = until Ctrl-C (default 60)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="where logs and outputs go (default runs/demo)")
    parser.add_argument("--rtsp", action="store_true",
                        help="real RTSP cameras: serve the project's road footage (H.264/H.265, 25-60 fps) over RTSP on "
                             "this machine and capture from it (default site config/site.rtsp.yaml)")
    parser.add_argument("--no-cloud", action="store_true", help="leave out the cloud path")
    parser.add_argument("--no-program", action="store_true", help="leave out the compositor")
    parser.add_argument("--watch", default="Person",
                        help="labels the cloud raises alerts for, comma separated (default Person)")
    parser.add_argument("--alert-cooldown", type=int, default=60, metavar="SECONDS",
                        help="at most one alert per camera and label in this many seconds (default 60)")
    parser.add_argument("--faces", action="store_true",
                        help="turn the face watch-list on: adds a camera looping real footage and enrols one person in it")
    parser.add_argument("--upload-recordings", action="store_true",
                        help="when the run ends, upload the program recordings to the stack's bucket (recordings/<site>/; "
                             "the local cloud's, or HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET with --no-cloud)")
    parser.add_argument("--dashboard-port", type=int, default=None,
                        help="port of the web dashboard (default 8088, or a free one if taken; 0 = no dashboard)")


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _service(name: str, args: list[str], env: dict[str, str], run_dir: Path) -> ServiceProcess:
    return ServiceProcess(name, [sys.executable, "-m", "hybridcam", *args], env, run_dir / "logs" / f"{name}.log")


def _redis(existing_url: str | None) -> tuple[str, LocalRedis | None]:
    if existing_url:
        bus = StreamBus(existing_url, give_up_after_s=1.0)
        if bus.ping():
            return existing_url, None
        console.print(f"[yellow]HYBRIDCAM_REDIS_URL={existing_url} does not answer; starting a local redis-server instead")
    local = LocalRedis().start()
    return local.url, local


def _no_probe_wait(env: dict[str, str], notes: list[str]) -> None:
    """The demo never waits for the back-end probe: without this machine's cached figures, edge_infer takes the
    rule's choice this time (the probe takes tens of seconds, once; `hybridcam edge-infer` or `make up` runs it)."""
    if "HYBRIDCAM_EDGE_PROBE_S" in env:
        return
    from services.edge_infer.backend_probe import probe_is_cached
    from services.edge_infer.settings import EdgeInferSettings
    from shared.settings import load_settings
    from vision.detectors.registry import DEFAULT_MODELS_DIR, resolve_model_path

    settings = load_settings(EdgeInferSettings)
    try:
        cached = probe_is_cached(resolve_model_path(settings.edge_model, DEFAULT_MODELS_DIR), settings.edge_probe_cache_dir)
    except (OSError, ValueError):
        cached = False
    if not cached:
        env["HYBRIDCAM_EDGE_PROBE_S"] = "0"
        notes.append("edge back-end: chosen by rule (this machine's probe is not cached yet; the first "
                     "`hybridcam edge-infer` measures it once)")


def run(args: argparse.Namespace) -> int:
    site_file = (args.site or Path(os.environ.get("HYBRIDCAM_SITE_FILE", DEFAULT_SITE_FILE))).resolve()
    run_dir: Path = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.faces:
        from devstack.demo_faces import site_with_lobby

        site_file = site_with_lobby(site_file, run_dir)
    rtsp_server = None
    if args.rtsp:
        from devstack.demo_rtsp import RTSP_SITE, start_rtsp_cameras

        site_file, rtsp_server = start_rtsp_cameras((args.site or RTSP_SITE).resolve(), run_dir)
    site = load_site(site_file)
    redis_url, local_redis = _redis(os.environ.get("HYBRIDCAM_REDIS_URL"))
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_url, "HYBRIDCAM_SITE_FILE": str(site_file), "PYTHONUNBUFFERED": "1"}

    notes: list[str] = []
    _no_probe_wait(env, notes)
    services = [
        _service("capture", ["capture"], env, run_dir),
        _service("edge-infer", ["edge-infer"], env, run_dir),
    ]
    cloud_stack = None
    if not args.no_cloud:
        cloud_stack = _start_cloud_path(env, run_dir, services, notes, args.watch, args.alert_cooldown, args.faces)
    if site.events.rules:  # zones and rules in the site file: events, and the dashboard's review page
        env["HYBRIDCAM_EVENTS_DIR"] = env["HYBRIDCAM_DASHBOARD_EVENTS_DIR"] = str(run_dir / "events")
        services.append(_service("events", ["events"], env, run_dir))
        notes.append(f"events: {len(site.events.rules)} rule(s), stored in {run_dir / 'events'} (the dashboard's /review)")
    program_urls = ("", "") if args.no_program else _add_compositor(env, run_dir, services, notes)
    if args.dashboard_port != 0:
        _add_dashboard(env, run_dir, services, notes, program_urls, args.dashboard_port)

    console.print(f"[bold]hybridcam demo[/] site [cyan]{site.site}[/] ({len(site.cameras)} cameras) from {site_file}")
    console.print(f"redis {redacted_url(redis_url)}{' (started for this demo)' if local_redis else ''}; logs and outputs in {run_dir}")
    if rtsp_server is not None:
        notes.append(f"RTSP cameras: the project's RTSP server at rtsp://127.0.0.1:{rtsp_server.port}/ ({', '.join(rtsp_server.mounts)})")
    for note in notes:
        console.print(note)
    for service in services:
        service.start()

    dashboard = TerminalDashboard(StreamBus(redis_url), {c.id: c.role for c in site.resolved()})
    started = time.monotonic()
    stopped_early: list[ServiceProcess] = []
    try:
        with Live(dashboard.render("starting..."), console=console, refresh_per_second=2, transient=False) as live:
            while not args.duration or time.monotonic() - started < args.duration:
                time.sleep(1.0)
                dashboard.refresh()
                elapsed = time.monotonic() - started
                left = f", {args.duration - elapsed:.0f} s left" if args.duration else ", Ctrl-C to stop"
                live.update(dashboard.render(f"live, {elapsed:.0f} s{left}"))
                stopped_early = [s for s in services if not s.alive()]
                if stopped_early:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        for service in reversed(services):
            service.stop()
        if args.upload_recordings and not args.no_program:
            _upload_recordings(run_dir / "program" / "recordings", site.site, cloud_stack)
        if cloud_stack is not None:
            cloud_stack.stop()
        dashboard.refresh()
        if local_redis:
            local_redis.stop()
        if rtsp_server is not None:
            rtsp_server.stop()
    _print_summary(dashboard, time.monotonic() - started, run_dir)
    for service in stopped_early:
        console.print(f"[red]{service.name} stopped unexpectedly; last lines of {service.log_path}:[/]\n{service.last_lines()}")
    return 1 if stopped_early else 0


def _upload_recordings(folder: Path, site: str, cloud_stack: Any) -> None:
    """The run is over and the compositor has closed its segments: send them to the bucket (the local cloud's
    while it still runs, or HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET)."""
    from services.compositor.outputs.recording_upload import s3_client, upload_recordings

    console.print()  # the live table's last line may lack its line end
    bucket = os.environ.get("HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET")
    if cloud_stack is not None:
        cloud_stack.point_this_process_here()  # its stop() puts the environment back
        bucket = cloud_stack.outputs["FramesBucketName"]
    if not bucket:
        console.print("recordings not uploaded: no bucket (run with the cloud path, or set HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET).")
        return
    upload_recordings(s3_client(), folder, bucket, site, console.print)


def _print_summary(dashboard: TerminalDashboard, elapsed: float, run_dir: Path) -> None:
    console.print()
    table = Table(title=f"summary after {elapsed:.0f} s", title_justify="left", show_header=False)
    for name, value in dashboard.summary_rows():
        table.add_row(name, value)
    program = sorted((run_dir / "program").glob("*")) if (run_dir / "program").exists() else []
    if program:
        table.add_row("program output", str(run_dir / "program"))
    console.print(table)


def _add_compositor(env: dict[str, str], run_dir: Path, services: list[ServiceProcess], notes: list[str]) -> tuple[str, str]:
    """Adds the compositor; returns the URLs of its MJPEG stream and of its encoded (H.264) program."""
    if not _available("services.compositor.main"):
        notes.append("[dim]compositor not in this build: no program output[/]")
        return "", ""
    preview_port, h264_port = free_port(), free_port()
    services.append(
        _service(
            "compositor",
            ["compositor", "--output-dir", str(run_dir / "program"), "--preview-port", str(preview_port),
             "--h264-port", str(h264_port), "--fps", "15"],
            env,
            run_dir,
        )
    )
    notes.append(f"program recording: {run_dir / 'program'}")
    return f"http://127.0.0.1:{preview_port}/stream", f"http://127.0.0.1:{h264_port}/stream"


def _add_dashboard(env: dict[str, str], run_dir: Path, services: list[ServiceProcess], notes: list[str],
                   program_urls: tuple[str, str], port: int | None) -> None:
    port = port or free_port(8088)
    args = ["dashboard", "--port", str(port), "--host", "127.0.0.1"]
    mjpeg_url, h264_url = program_urls
    if mjpeg_url:
        args += ["--program-url", mjpeg_url]
    if h264_url:
        args += ["--program-h264-url", h264_url]
    services.append(_service("dashboard", args, env, run_dir))
    token = _dashboard_token()  # a .env made for compose holds one, and the dashboard then asks for it
    query = f"?token={token}" if token else ""
    notes.append(f"[bold green]open http://127.0.0.1:{port}/{query} to watch the program, cameras, alerts and cloud frames[/]")


def _dashboard_token() -> str:
    from services.dashboard.settings import DashboardSettings

    return load_settings(DashboardSettings, dashboard_host="127.0.0.1").token


def _start_cloud_path(env: dict[str, str], run_dir: Path, services: list[ServiceProcess], notes: list[str],
                      watch: str, cooldown_s: int, faces: bool = False) -> object | None:
    if not (_available("services.sampler.main") and _available("devstack.local_cloud")):
        notes.append("[dim]cloud path not in this build[/]")
        return None
    from devstack.local_cloud import start_local_cloud

    stack = start_local_cloud(run_dir, watch_labels=watch, alert_cooldown_s=cooldown_s, face_search=faces)
    if faces:
        from devstack.demo_faces import enrol_demo_person

        notes.append(enrol_demo_person(stack))
    env.update(stack.environment())
    services.append(_service("poller", ["cloud", "poll"], env, run_dir))
    services.append(_service("sampler", ["sampler"], env, run_dir))
    services.append(_service("results-bridge", ["results-bridge"], env, run_dir))
    notes.append(f"cloud path: local AWS emulator {stack.aws_url}, local detector endpoint {stack.models_url}")
    return stack
