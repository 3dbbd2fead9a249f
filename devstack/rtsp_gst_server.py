"""An RTSP server for recorded footage, built on GStreamer's gst-rtsp-server (not a hand-written RTSP stack).

Run it with the system Python that has Debian's GStreamer bindings (``python3-gst-1.0``,
``gir1.2-gst-rtsp-server-1.0``); it imports nothing from the project, so the project's own
interpreter need not carry them. ``devstack/rtsp_server.py`` starts and steers it.

Each mount serves one or more H.264/H.265 files back to back, looped, without re-encoding: the
access units are read once, then pushed at the file's frame rate as a live camera would send them
(an ``appsrc`` stamped on arrival, the codec's RTP payloader). Every client gets its own pipeline
that starts at the first frame of the first file, so frame ``n`` a client receives is access unit
``n mod length`` of the mount. Commands on stdin, one per line:

  ``stall NAME``   keep NAME's connections open but send nothing (a camera that hangs)
  ``resume NAME``  send again
  ``stats``        print ``stats {json}``: access units pushed per mount, clients connected
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

CODECS = {"h264": ("h264parse", "rtph264pay"), "h265": ("h265parse", "rtph265pay")}


@dataclass
class Footage:
    """The access units of a mount, in decode order, with their frame rate."""

    codec: str
    fps: float
    units: list[bytes] = field(default_factory=list)


@dataclass
class Mount:
    name: str
    footage: Footage
    stalled: threading.Event = field(default_factory=threading.Event)
    pushed: int = 0
    clients: int = 0


def load_units(path: str, codec: str) -> tuple[list[bytes], float]:
    """Demux and parse a file into byte-stream access units with parameter sets before every key frame."""
    parse, _ = CODECS[codec]
    pipeline = Gst.parse_launch(
        f"filesrc name=file ! parsebin ! {parse} config-interval=-1 ! "
        f"video/x-{codec},stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    pipeline.get_by_name("file").set_property("location", path)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    units: list[bytes] = []
    fps = 0.0
    while True:
        sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
        if sample is None:
            break
        if not fps:
            structure = sample.get_caps().get_structure(0)
            ok, num, den = structure.get_fraction("framerate")
            fps = num / den if ok and den and num else 0.0
        buffer = sample.get_buffer()
        units.append(buffer.extract_dup(0, buffer.get_size()))
    error = pipeline.get_bus().timed_pop_filtered(0, Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if not units:
        reason = error.parse_error()[0].message if error else "none found"
        raise SystemExit(f"rtsp server: no {codec} frames in {path}: {reason}")
    return units, fps


class FootageFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, mount: Mount) -> None:
        super().__init__()
        self.mount = mount
        parse, pay = CODECS[mount.footage.codec]
        caps = f"video/x-{mount.footage.codec},stream-format=byte-stream,alignment=au"
        self.set_launch(
            f"( appsrc name=src is-live=true do-timestamp=true format=time caps={caps} "
            f"! {parse} ! {pay} name=pay0 pt=96 config-interval=-1 )"
        )
        self.set_shared(False)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        source = media.get_element().get_by_name("src")
        done = threading.Event()
        media.connect("unprepared", lambda *_: done.set())
        threading.Thread(target=self._feed, args=(source, done), daemon=True).start()

    def _feed(self, source: Gst.Element, done: threading.Event) -> None:
        """Push access units at the footage's rate until the client goes (or forever, looped)."""
        mount, units = self.mount, self.mount.footage.units
        interval = 1.0 / mount.footage.fps
        mount.clients += 1
        index, due = 0, time.monotonic()
        try:
            while not done.is_set():
                if mount.stalled.is_set():
                    time.sleep(0.02)
                    due = time.monotonic()
                    continue
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                unit = units[index % len(units)]
                buffer = Gst.Buffer.new_wrapped(unit)
                buffer.duration = int(Gst.SECOND * interval)
                if source.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
                    return
                mount.pushed += 1
                index += 1
                due = max(due + interval, time.monotonic() - interval)
        finally:
            mount.clients -= 1


def parse_mount(spec: str, default_fps: float) -> Mount:
    """``NAME=CODEC:FILE[+FILE...][@FPS]``: the files are served one after the other, then again."""
    name, _, rest = spec.partition("=")
    codec, _, files = rest.partition(":")
    files, _, fps_text = files.partition("@")
    if not name or codec not in CODECS or not files:
        raise SystemExit(f"rtsp server: bad --mount {spec!r} (NAME=h264|h265:FILE[+FILE...][@FPS])")
    footage = Footage(codec, float(fps_text) if fps_text else 0.0)
    for path in files.split("+"):
        units, fps = load_units(path, codec)
        footage.units.extend(units)
        footage.fps = footage.fps or fps
    footage.fps = footage.fps or default_fps
    return Mount(name, footage)


def serve_commands(mounts: dict[str, Mount], loop: GLib.MainLoop) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] in ("stall", "resume") and len(words) == 2 and words[1] in mounts:
            event = mounts[words[1]].stalled
            event.set() if words[0] == "stall" else event.clear()
            print(f"ok {words[0]} {words[1]}", flush=True)
        elif words[0] == "stats":
            figures = {m.name: {"pushed": m.pushed, "clients": m.clients} for m in mounts.values()}
            print("stats " + json.dumps(figures), flush=True)
        else:
            print(f"error unknown command {line.strip()!r}", flush=True)
    loop.quit()  # stdin closed: the parent has gone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", default=[], help="NAME=h264|h265:FILE[+FILE...][@FPS]")
    parser.add_argument("--default-fps", type=float, default=25.0, help="when a file does not state its rate")
    args = parser.parse_args()
    Gst.init(None)
    mounts = {m.name: m for m in (parse_mount(spec, args.default_fps) for spec in args.mount)}
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    points = server.get_mount_points()
    for mount in mounts.values():
        points.add_factory(f"/{mount.name}", FootageFactory(mount))
    if server.attach(None) == 0:
        print(f"error cannot listen on port {args.port}", flush=True)
        return 1
    loop = GLib.MainLoop()
    threading.Thread(target=serve_commands, args=(mounts, loop), daemon=True).start()
    print("ready " + json.dumps({m.name: {"codec": m.footage.codec, "fps": m.footage.fps,
                                           "frames": len(m.footage.units)} for m in mounts.values()}), flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
