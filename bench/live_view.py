"""Live view benchmark: glass-to-glass latency in a real browser, WebRTC against MJPEG and HLS.

Runs the real services on a real redis-server: capture with N synthetic cameras (default 6 at
1920x1080, 15 fps), edge-infer, the compositor stamping each frame's capture time into the
program as a binary code (outputs: h264 for WebRTC and the WebSocket, the MJPEG preview, HLS) and the dashboard.
Headless Debian Chromium (Playwright) then watches the program four ways, one after the other,
with V pages each:

* WebRTC: the dashboard page itself (its live view, aiortc sending the compositor's H.264);
* WebSocket: the dashboard page with the compositor's H.264 over a WebSocket, decoded with WebCodecs and drawn on
  the program canvas by a worker (read there, after each picture);
* MJPEG: the dashboard page showing /program.mjpg;
* HLS: a page playing the compositor's playlist natively (served next to it, so a canvas may read it);
* camera: the dashboard's WebRTC view of one camera (a second encode, in the dashboard): its CPU cost
  (the camera's picture carries no timecode, so no latency for it).

In the page, every new picture is drawn to a canvas as it is presented (requestVideoFrameCallback;
for the MJPEG <img>, every animation frame; for the WebSocket canvas, as each picture is drawn) and its code read back:
latency = presentation time - capture time, both on this machine's clock. CPU per viewer is
the extra CPU of the servers (dashboard + compositor) and of the browser while the pages watch,
over a baseline measured with no page open, divided by V.

    python bench/live_view.py [--seconds 15] [--viewers 2] [--cameras 6] [--fps 15] [--program-fps 15] [--no-edge]
                              [--program-delay 0.4] [--modes webrtc,websocket,mjpeg,hls,camera] [--rounds 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import httpx
import numpy as np
import psutil
from playwright.sync_api import Browser, Page, Worker, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.servers import LocalRedis, free_port  # noqa: E402
from services.compositor.renderer import read_timecode  # noqa: E402
from shared.h264_stream import RecordReader  # noqa: E402

CHROMIUM = os.environ.get("HYBRIDCAM_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
REGIONS = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75)]
HLS_PAGE = b"<!doctype html><title>hls</title><video id=v src=program.m3u8 autoplay muted playsinline></video>"

# Reads the capture timecode (services/compositor/renderer.py: 48 bits, 16 px blocks, 24 per row,
# on a 1920-wide program) from a <video> or <img>, at each new picture, until asked to stop.
MEASURE_JS = """([selector, programWidth]) => {
  const el = document.querySelector(selector);
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const m = window.__measure = { samples: [], presented: 0, distinct: 0, last: -1, started: performance.now(), stop: false,
                                 firstPresented: null, lastPresented: null };
  const read = (shownAt) => {
    const width = el.videoWidth || el.naturalWidth || (el.tagName === "CANVAS" ? el.width : 0);
    if (!width) return;
    const block = 16 * width / programWidth;
    canvas.width = Math.ceil(24 * block); canvas.height = Math.ceil(2 * block);
    ctx.drawImage(el, 0, 0, canvas.width, canvas.height, 0, 0, canvas.width, canvas.height);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let value = 0;
    for (let bit = 0; bit < 48; bit++) {
      const x = Math.floor((bit % 24 + 0.5) * block), y = Math.floor((Math.floor(bit / 24) + 0.5) * block);
      const i = (y * canvas.width + x) * 4;
      if ((data[i] + data[i + 1] + data[i + 2]) / 3 > 128) value += 2 ** bit;
    }
    m.presented += 1;
    if (value !== m.last) {
      m.last = value; m.distinct += 1;
      if (value > 1e12) m.samples.push(shownAt - value);
    }
  };
  if (el.tagName === "VIDEO") {
    const onFrame = (now, meta) => {
      // The callback may skip frames when the page's main thread is busy; presentedFrames counts them all.
      if (m.firstPresented === null) m.firstPresented = meta.presentedFrames;
      m.lastPresented = meta.presentedFrames;
      read(performance.timeOrigin + (meta.expectedDisplayTime || now));
      if (!m.stop) el.requestVideoFrameCallback(onFrame);
    };
    el.requestVideoFrameCallback(onFrame);
  } else if (el.tagName === "CANVAS") {
    // The WebSocket view draws each decoded picture on its canvas and says so; it is shown at the next paint.
    el.addEventListener("picture", () => { if (!m.stop) read(performance.timeOrigin + performance.now()); });
  } else {
    const onAnimationFrame = (now) => {
      read(performance.timeOrigin + now);
      if (!m.stop) requestAnimationFrame(onAnimationFrame);
    };
    requestAnimationFrame(onAnimationFrame);
  }
}"""
RTC_STATS_JS = """async () => {
  if (typeof liveView === "undefined" || !liveView.pc) return null;
  const out = {}; (await liveView.pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp") Object.assign(out, s); });
  return { packetsLost: out.packetsLost, nackCount: out.nackCount, pliCount: out.pliCount, framesDropped: out.framesDropped,
           framesDecoded: out.framesDecoded, freezeCount: out.freezeCount,
           jitterBufferMs: out.jitterBufferEmittedCount ? 1000 * out.jitterBufferDelay / out.jitterBufferEmittedCount : null,
           decodeMs: out.framesDecoded ? 1000 * out.totalDecodeTime / out.framesDecoded : null };
}"""
# The same, inside the WebSocket view's worker, which draws each picture on its OffscreenCanvas and then calls
# self.onPicture with it.
MEASURE_WORKER_JS = """(programWidth) => {
  const m = self.__measure = { samples: [], presented: 0, distinct: 0, last: -1, started: performance.now(), stop: false,
                               firstPresented: null, lastPresented: null };
  self.onPicture = (canvas) => {
    if (m.stop) return;
    const block = 16 * canvas.width / programWidth;
    const data = canvas.getContext("2d").getImageData(0, 0, Math.ceil(24 * block), Math.ceil(2 * block)).data;
    const width = Math.ceil(24 * block);
    let value = 0;
    for (let bit = 0; bit < 48; bit++) {
      const x = Math.floor((bit % 24 + 0.5) * block), y = Math.floor((Math.floor(bit / 24) + 0.5) * block);
      const i = (y * width + x) * 4;
      if ((data[i] + data[i + 1] + data[i + 2]) / 3 > 128) value += 2 ** bit;
    }
    m.presented += 1;
    if (value !== m.last) { m.last = value; m.distinct += 1; if (value > 1e12) m.samples.push(performance.timeOrigin + performance.now() - value); }
  };
}"""
SOCKET_STATS_JS = """() => (typeof liveSocket === "undefined" || !liveSocket.worker) ? null :
  { codec: liveSocket.codec, decoded: liveSocket.decoded, skipped: liveSocket.skipped, undrawn: liveSocket.undrawn,
    shown: liveSocket.presented }"""
COLLECT_JS = """() => { const m = self.__measure; m.stop = true;
  const presented = m.firstPresented === null ? m.presented : m.lastPresented - m.firstPresented;
  return { samples: m.samples, distinct: m.distinct, presented, callbacks: m.presented,
           seconds: (performance.now() - m.started) / 1000 }; }"""


def site_yaml(cameras: int, width: int, height: int, fps: float) -> str:
    # Frame rings are named after the camera: ids of its own keep the bench off any other site on the host.
    wide = f"livewide{os.getpid()}"
    lines = ["site: bench", f"defaults: {{width: {width}, height: {height}, fps: {fps}}}",
             "synthetic_scene: {seed: 7, people: 3, scenario: walkthrough}", "cameras:", f"  - {{id: {wide}, role: master, source: synthetic}}"]
    for i, region in enumerate(REGIONS[: cameras - 1]):
        lines.append(f"  - {{id: liveslave{i + 1}_{os.getpid()}, source: synthetic, covers: {{master: {wide}, region: {list(region)}}}}}")
    return "\n".join(lines) + "\n"


class CpuMeter:
    """CPU seconds of a set of processes (and their children) between two readings."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids

    def seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                process = psutil.Process(pid)
                for p in [process, *process.children(recursive=True)]:
                    times = p.cpu_times()
                    total += times.user + times.system
            except psutil.Error:
                continue
        return total


@dataclass
class ModeResult:
    name: str
    latencies_ms: np.ndarray
    pictures_per_s: float
    frames_per_s: float  # pictures the <video> presented (0 for the MJPEG <img>)
    server_cpu_per_viewer: float  # % of one core
    browser_cpu_per_viewer: float
    note: str = ""

    def row(self) -> str:
        if not self.latencies_ms.size and not self.frames_per_s:
            return f"{self.name:<7} no stamped picture read ({self.note})"
        latency = "latency not measured"
        if self.latencies_ms.size:
            p50, p95 = np.percentile(self.latencies_ms, [50, 95])
            latency = f"p50 {p50:7.0f} ms  p95 {p95:7.0f} ms  ({self.latencies_ms.size:4d} pictures)"
        return (f"{self.name:<7} {latency}  "
                + (f"{self.pictures_per_s:5.1f} new pictures/s, " if self.pictures_per_s else "")
                + (f"{self.frames_per_s:5.1f} frames/s presented" if self.frames_per_s else "(an <img>: no frame count)") + "  "
                f"cpu per viewer: servers {self.server_cpu_per_viewer:5.1f} %, browser {self.browser_cpu_per_viewer:5.1f} %"
                + (f"  [{self.note}]" if self.note else ""))


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


class OutputTap(threading.Thread):
    """The baseline: reads the compositor's h264 output here, decodes it and reads each new picture's code
    on arrival, so 'latency at the compositor's output' is what capture and compositing alone take."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        decoder, reader, last = av.CodecContext.create("h264", "r"), RecordReader(), -1.0
        with httpx.stream("GET", self.url, timeout=httpx.Timeout(5.0, read=30.0)) as answer:
            for chunk in answer.iter_raw():
                for unit in reader.feed(chunk):
                    for frame in decoder.decode(av.Packet(unit.data)):
                        code = read_timecode(frame.to_ndarray(format="gray"))
                        if code != last and code > 1e9:
                            self.samples.append((time.time() - code) * 1000)
                        last = code
                if self.stop.is_set():
                    return


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return  # a player that drops a segment it no longer needs is no news


def serve_folder(folder: Path) -> ThreadingHTTPServer:
    (folder / "index.html").write_bytes(HLS_PAGE)
    handler = functools.partial(_QuietFiles, directory=str(folder))
    server = _QuietServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def watch(browser: Browser, open_page: Callable[[Page], str], viewers: int, seconds: float,
          servers: CpuMeter, browser_cpu: CpuMeter) -> tuple[list[dict], float, float, str]:
    contexts = [browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900}) for _ in range(viewers)]
    pages = [c.new_page() for c in contexts]
    try:
        selectors = [open_page(p) for p in pages]
        measured: list[Page | Worker] = []
        for page, selector in zip(pages, selectors, strict=True):
            if selector == "worker":  # the WebSocket view draws in its worker
                worker = next(w for w in page.workers if w.url.endswith("live_socket_worker.js"))
                worker.evaluate(MEASURE_WORKER_JS, 1920)
                measured.append(worker)
            else:
                page.evaluate(MEASURE_JS, [selector, 1920])
                measured.append(page)
        server0, browser0, t0 = servers.seconds(), browser_cpu.seconds(), time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        server_pct = (servers.seconds() - server0) / elapsed * 100
        browser_pct = (browser_cpu.seconds() - browser0) / elapsed * 100
        mode_text = pages[0].evaluate("() => document.querySelector('#program-mode')?.textContent || ''")
        receiver = pages[0].evaluate(RTC_STATS_JS) or pages[0].evaluate(SOCKET_STATS_JS)
        if receiver:
            mode_text += "; receiver: " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in receiver.items())
        return [p.evaluate(COLLECT_JS) for p in measured], server_pct, browser_pct, mode_text
    finally:
        for context in contexts:
            context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring time per mode (all rounds together)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds per mode (use 3 or more on a machine whose load varies)")
    parser.add_argument("--viewers", type=int, default=2, help="pages watching at once per mode")
    parser.add_argument("--cameras", type=int, default=6, choices=range(1, 7))
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=15.0, help="capture fps per camera")
    parser.add_argument("--program-fps", type=float, default=15.0)
    parser.add_argument("--mjpeg-fps", type=float, default=5.0, help="MJPEG preview rate (the compositor's default is 5)")
    parser.add_argument("--no-edge", action="store_true", help="leave edge detection out")
    parser.add_argument("--modes", type=lambda text: [m.strip().lower() for m in text.split(",") if m.strip()], default=[],
                        help="comma list of the modes to watch (webrtc, websocket, mjpeg, hls, camera); default all")
    parser.add_argument("--program-delay", type=float, default=0.4,
                        help="the compositor's program delay behind capture, s (its default 0.4 puts boxes on their own frames; "
                             "every mode's latency includes it)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: install Debian's chromium (scripts/install_system_packages.sh)")
        return 1

    work = Path(tempfile.mkdtemp(prefix="hybridcam-live-bench-"))
    (work / "site.yaml").write_text(site_yaml(args.cameras, args.width, args.height, args.fps))
    h264_port, mjpeg_port, port, token = free_port(), free_port(), free_port(), "bench"
    with LocalRedis(appendonly=False) as redis:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("HYBRIDCAM_")},
               "HYBRIDCAM_REDIS_URL": redis.url, "HYBRIDCAM_SITE_FILE": str(work / "site.yaml"),
               "HYBRIDCAM_COMPOSITOR_FPS": str(args.program_fps), "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(work / "program"),
               "HYBRIDCAM_COMPOSITOR_TIMECODE": "true", "HYBRIDCAM_COMPOSITOR_MJPEG_FPS": str(args.mjpeg_fps),
               "HYBRIDCAM_COMPOSITOR_HLS_SEGMENT_S": "1",
               "HYBRIDCAM_COMPOSITOR_PROGRAM_DELAY_S": str(args.program_delay), "HYBRIDCAM_CAPTURE_RING_SLOTS": "8", "HYBRIDCAM_DASHBOARD_TOKEN": token}
        logs = work / "logs"
        logs.mkdir()

        def run(*a: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-m", "hybridcam", *a], env=env, stdout=(logs / f"{a[0]}.log").open("wb"),
                                    stderr=subprocess.STDOUT)

        processes = {"capture": run("capture")}
        if not args.no_edge:
            processes["edge-infer"] = run("edge-infer")
        processes["compositor"] = run("compositor", "--outputs", "hls,mjpeg,h264", "--h264-port", str(h264_port),
                                      "--preview-port", str(mjpeg_port))
        processes["dashboard"] = run("dashboard", "--port", str(port), "--program-h264-url", f"http://127.0.0.1:{h264_port}/stream",
                                     "--program-url", f"http://127.0.0.1:{mjpeg_port}/stream")
        url = f"http://127.0.0.1:{port}"
        hls_server: ThreadingHTTPServer | None = None
        try:
            _wait_for(f"{url}/health", processes)
            _wait_for_file(work / "program" / "hls" / "program.m3u8", processes, segments=3)
            hls_server = serve_folder(work / "program" / "hls")
            hls_url = f"http://127.0.0.1:{hls_server.server_address[1]}/index.html"
            servers = CpuMeter(lambda: [processes["dashboard"].pid, processes["compositor"].pid])
            print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; {args.cameras} synthetic cameras "
                  f"{args.width}x{args.height}@{args.fps:g}, program 1920x1080@{args.program_fps:g}, edge detection "
                  f"{'off' if args.no_edge else 'on'}; program delay {args.program_delay:g} s; {args.viewers} viewers per mode, {args.seconds:g} s each")
            tap = OutputTap(f"http://127.0.0.1:{h264_port}/stream")
            results = measure_all(args, url, token, hls_url, servers, tap, logs)
        finally:
            if hls_server is not None:
                hls_server.shutdown()
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
    fps = _program_fps(logs / "compositor.log")
    print(f"program: {fps}; capture {args.fps:g} fps. 'new pictures/s' counts distinct capture frames that reached the page "
          "(at most the capture rate; read in the page's frame callbacks, which a busy page skips), 'frames/s presented' the "
          "program pictures the <video> showed (requestVideoFrameCallback's presentedFrames; at most the program rate)")
    for result in results:
        print(result.row())
    shutil.rmtree(work, ignore_errors=True)
    return 0


def measure_all(args: argparse.Namespace, url: str, token: str, hls_url: str, servers: CpuMeter, tap: OutputTap,
                logs: Path) -> list[ModeResult]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        browser_pid = _browser_pid()
        browser_cpu = CpuMeter(lambda: [browser_pid] if browser_pid else [])
        server0, browser0, t0 = servers.seconds(), browser_cpu.seconds(), time.monotonic()
        time.sleep(5.0)
        idle_s = time.monotonic() - t0
        idle_server = (servers.seconds() - server0) / idle_s * 100
        idle_browser = (browser_cpu.seconds() - browser0) / idle_s * 100

        def webrtc(page: Page) -> str:
            page.goto(f"{url}/?token={token}&transport=webrtc")
            page.wait_for_selector("#program-mode.ok", timeout=60_000)
            return "#program-video"

        def websocket(page: Page) -> str:
            page.goto(f"{url}/?token={token}&transport=websocket")
            page.wait_for_selector("#program-mode.ok", timeout=60_000)
            return "worker"

        def camera(page: Page) -> str:
            page.goto(f"{url}/?token={token}&live=camera:livewide{os.getpid()}&transport=webrtc")
            page.wait_for_selector("#program-mode.ok", timeout=60_000)
            return "#program-video"

        def mjpeg(page: Page) -> str:
            page.goto(f"{url}/?token={token}&transport=mjpeg")
            page.wait_for_function("document.querySelector('#program').naturalWidth > 0", timeout=30_000)
            return "#program"

        def hls(page: Page) -> str:
            page.goto(hls_url)
            page.wait_for_function("document.querySelector('#v').readyState >= 2 && !document.querySelector('#v').paused", timeout=60_000)
            return "#v"

        results = []
        tap.start()
        modes = [(n, f) for n, f in (("WebRTC", webrtc), ("WebSocket", websocket), ("MJPEG", mjpeg), ("HLS", hls), ("camera", camera))
                 if not args.modes or n.lower() in args.modes]
        # Interleaved rounds, each mode's first place rotating: a load that comes and goes (another job on the
        # machine) then falls on every mode alike, and the figures of a mode pool its rounds.
        watched: dict[str, list[Watched]] = {name: [] for name, _ in modes}
        problems: dict[str, str] = {}
        for round_ in range(args.rounds):
            for name, open_page in modes[round_ % len(modes):] + modes[: round_ % len(modes)]:
                tapped = len(tap.samples)
                try:
                    pages, server_pct, browser_pct, mode_text = watch(browser, open_page, args.viewers, args.seconds / args.rounds,
                                                                      servers, browser_cpu)
                except Exception as error:  # a mode that cannot play is reported, the others still run
                    print(f"{name}: {error}; last lines of the dashboard's log:\n{_tail(logs / 'dashboard.log')}", flush=True)
                    problems[name] = f"{type(error).__name__}: {str(error)[:160]}"
                    continue
                watched[name].append(Watched(pages, server_pct, browser_pct, mode_text, list(tap.samples[tapped:])))
        for name, _ in modes:
            results.append(_mode_result(name, watched[name], problems.get(name, ""), args, idle_server, idle_browser))
            print(results[-1].row(), flush=True)
        browser.close()
    tap.stop.set()
    tap_ms = np.array(tap.samples)
    if tap_ms.size:
        p50, p95 = np.percentile(tap_ms, [50, 95])
        print(f"baseline: capture -> compositor's encoded output (decoded in this process, no browser): p50 {p50:.0f} ms, "
              f"p95 {p95:.0f} ms ({tap_ms.size} pictures, over all modes)")
    print(f"baseline with no page open: servers {idle_server:.0f} %, browser {idle_browser:.0f} % (100 % = one core)")
    return results


@dataclass
class Watched:
    """One round of one mode."""

    pages: list[dict]
    server_pct: float
    browser_pct: float
    mode_text: str
    output_ms: list[float]  # the compositor's output meanwhile


def _mode_result(name: str, rounds: list[Watched], problem: str, args: argparse.Namespace, idle_server: float,
                 idle_browser: float) -> ModeResult:
    if not rounds:
        return ModeResult(name, np.array([]), 0.0, 0.0, 0.0, 0.0, problem or "not watched")
    pages = [p for r in rounds for p in r.pages]
    samples = np.array([s for p in pages for s in p["samples"]]) if name != "camera" else np.array([])
    rate = float(np.mean([p["distinct"] / p["seconds"] for p in pages])) if name != "camera" else 0.0
    presented = float(np.mean([p["presented"] / p["seconds"] for p in pages])) if name != "MJPEG" else 0.0
    note = f"page says {rounds[-1].mode_text!r}" if name != "HLS" else ""
    meanwhile = np.array([ms for r in rounds for ms in r.output_ms])
    if meanwhile.size and name != "camera":
        note = (f"compositor's output meanwhile p50 {np.percentile(meanwhile, 50):.0f} ms, p95 {np.percentile(meanwhile, 95):.0f} ms; "
                + note).rstrip("; ")
    if name == "MJPEG":
        note += f"; preview at {args.mjpeg_fps:g} fps, 960 wide"
    if name == "camera":
        note += "; one camera over WebRTC: its own 960-wide encode in the dashboard, shared by the viewers; no timecode in a camera's picture"
    if problem:
        note += f"; {len(rounds)} of {args.rounds} rounds played ({problem})"
    server = float(np.mean([r.server_pct for r in rounds])) - idle_server
    browser = float(np.mean([r.browser_pct for r in rounds])) - idle_browser
    return ModeResult(name, samples, rate, presented, server / args.viewers, browser / args.viewers, note)


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _browser_pid() -> int:
    me = psutil.Process()
    for child in me.children(recursive=True):
        try:
            if "chromium" in child.name() and "--type=" not in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return 0


def _wait_for(url: str, processes: dict[str, subprocess.Popen], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} stopped (exit {process.returncode}) before the bench started")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")


def _wait_for_file(playlist: Path, processes: dict[str, subprocess.Popen], segments: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if playlist.exists() and playlist.read_text().count("#EXTINF") >= segments:
            return
        time.sleep(0.5)
    raise SystemExit(f"the compositor wrote no HLS playlist with {segments} segments within {timeout_s:.0f} s")


def _program_fps(log: Path) -> str:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if "program ended:" in line:
            return line.split("program ended: ", 1)[1]
    return "compositor did not report"


if __name__ == "__main__":
    sys.exit(main())
