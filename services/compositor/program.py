"""The live program: follows every camera's frame stream and the detection stream,
directs, renders and encodes one picture per tick of a wall clock at the program rate.

Never stalls: a tick that finds no new frame repeats the last picture; a camera whose
frames stop is cut away from; detections that stop make the director hold the wide shot;
a tick that runs late is skipped (the next picture carries the wall-clock timestamp).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from services.compositor.director import Director, DirectorTiming
from services.compositor.edit_decision_list import EditDecisionList
from services.compositor.encoder import H264Encoder
from services.compositor.face_labels import FaceLabels
from services.compositor.fusion import DetectionFusion
from services.compositor.outputs.program_output import ProgramOutput
from services.compositor.renderer import ProgramRenderer, RenderOptions, ShotPicture
from services.compositor.settings import CompositorSettings
from shared.frame_ring import FrameFetcher, FrameGone
from shared.schemas import DetectionSet, FaceMatches, FrameRef, Health, HealthState, SchemaError, decode
from shared.site_config import ResolvedCamera
from shared.stream_bus import DETECTIONS_STREAM, FACE_MATCHES_STREAM, HEALTH_STREAM, StreamBus, frames_stream

log = logging.getLogger(__name__)


class StreamFollower(threading.Thread):
    """One blocking XREAD over all frame streams and the detection stream.

    Keeps the newest FrameRef of each camera (with its arrival time) and queues
    detection sets for the program thread, which owns the fusion state.
    """

    def __init__(self, bus: StreamBus, camera_ids: list[str], stop: threading.Event) -> None:
        super().__init__(name="compositor-streams", daemon=True)
        self.bus = bus
        self.stop = stop
        self.camera_of = {frames_stream(c): c for c in camera_ids}
        self.latest: dict[str, tuple[FrameRef, float]] = {}
        self.detections: queue.SimpleQueue[tuple[DetectionSet, float]] = queue.SimpleQueue()
        self.counters: Counter[str] = Counter()
        self.face_matches: queue.SimpleQueue[tuple[FaceMatches, float]] = queue.SimpleQueue()
        self.want_face_matches = False  # queued only for a program that labels them (and so drains the queue)
        self._last_ids = {stream: "$" for stream in [*self.camera_of, DETECTIONS_STREAM, FACE_MATCHES_STREAM]}

    def run(self) -> None:
        while not self.stop.is_set():
            entries = self.bus.follow(self._last_ids, count=200, block_ms=200)
            arrived = time.time()
            for entry in entries:
                self._last_ids[entry.stream] = entry.entry_id
                self._take(entry.stream, entry.payload, arrived)

    def _take(self, stream: str, raw: bytes, arrived: float) -> None:
        try:
            message = decode(raw)
        except SchemaError as error:
            self.counters["undecodable"] += 1
            log.debug("dropped an entry of %s: %s", stream, error)
            return
        if isinstance(message, FrameRef) and stream in self.camera_of:
            self.latest[message.camera_id] = (message, arrived)
            self.counters["frames"] += 1
        elif isinstance(message, DetectionSet):
            self.detections.put((message, arrived))
            self.counters[f"detections_{message.source}"] += 1
        elif isinstance(message, FaceMatches) and self.want_face_matches:
            self.face_matches.put((message, arrived))


@dataclass
class ProgramStats:
    started: float = 0.0
    ended: float = 0.0
    pictures: int = 0
    skipped_ticks: int = 0
    repeated: int = 0
    cuts: int = 0
    last_reason: str = ""
    frame_drops: int = 0
    latencies: list[float] = field(default_factory=list)  # program time - capture time of the shown frame

    @property
    def fps(self) -> float:
        return self.pictures / (self.ended - self.started) if self.ended > self.started else 0.0


def timing_from(settings: CompositorSettings) -> DirectorTiming:
    return DirectorTiming(
        min_shot_s=settings.compositor_min_shot_s,
        confirm_s=settings.compositor_confirm_s,
        cooldown_s=settings.compositor_cooldown_s,
        switch_margin=settings.compositor_switch_margin,
        idle_after_s=settings.compositor_idle_after_s,
        detection_timeout_s=settings.compositor_detection_timeout_s,
    )


def render_options_from(settings: CompositorSettings) -> RenderOptions:
    return RenderOptions(
        boxes=settings.compositor_overlay_boxes,
        camera_name=settings.compositor_overlay_camera_name,
        clock=settings.compositor_overlay_clock,
        pip=settings.compositor_pip,
        virtual_camera=settings.compositor_virtual_camera,
        timecode=settings.compositor_timecode,
    )


class Program:
    def __init__(self, settings: CompositorSettings, cameras: list[ResolvedCamera], bus: StreamBus, outputs: list[ProgramOutput]) -> None:
        self.settings = settings
        self.cameras = {c.id: c for c in cameras}
        self.bus = bus
        self.outputs = outputs
        self.fps = settings.compositor_fps
        self.stop = threading.Event()
        self.follower = StreamFollower(bus, list(self.cameras), self.stop)
        self.fusion = DetectionFusion(
            labels=settings.label_set, min_score=settings.compositor_min_score, track_max_age_s=settings.compositor_track_max_age_s
        )
        self.director = Director(cameras, timing_from(settings))
        self.renderer = ProgramRenderer(settings.compositor_width, settings.compositor_height, render_options_from(settings))
        self.face_labels = FaceLabels(settings.compositor_face_label_hold_s) if settings.compositor_face_labels else None
        self.follower.want_face_matches = self.face_labels is not None
        self.encoder = H264Encoder(
            settings.compositor_width, settings.compositor_height, self.fps, settings.compositor_x264_preset,
            settings.compositor_crf, settings.compositor_keyframe_s,
        )
        self.fetcher = FrameFetcher()
        self.frames: dict[str, np.ndarray] = {}
        self.shown_seq: dict[str, int] = {}
        self.stats = ProgramStats()
        self.edl: EditDecisionList | None = None
        self.instance = socket.gethostname()
        self._shown_capture_ts = 0.0

    def run(self, duration_s: float = 0.0) -> ProgramStats:
        self.follower.start()
        for output in self.outputs:
            output.start(self.encoder.stream)
        start = time.time()
        self.stats.started = start
        self.edl = EditDecisionList(self.settings.compositor_output_dir / "edit-decision-list.jsonl", start)
        tick, last_pts, next_health = 0, -1, start
        try:
            while not self.stop.is_set():
                now = time.time()
                if duration_s and now - start >= duration_s:
                    break
                last_pts = self._tick(now, start, last_pts)
                if now >= next_health:
                    self._publish_health(now)
                    next_health = now + 5.0
                tick += 1
                due = start + tick / self.fps
                late = time.time() - due
                if late > 1.0 / self.fps:  # behind: skip the ticks we cannot make up
                    skipped = int(late * self.fps)
                    self.stats.skipped_ticks += skipped
                    tick += skipped
                    due = start + tick / self.fps
                self.stop.wait(max(0.0, due - time.time()))
        finally:
            self._finish(time.time(), last_pts)
        return self.stats

    def _tick(self, now: float, start: float, last_pts: int) -> int:
        while True:
            try:
                detection_set, arrived = self.follower.detections.get_nowait()
            except queue.Empty:
                break
            self.fusion.add(detection_set, arrived)
        available, lost_reason = self._available(now)
        cut = self.director.decide(now, self.fusion, available, lost_reason)
        if cut is not None:
            self.stats.cuts += 1
            assert self.edl is not None
            self.edl.record(cut)
            self.stats.last_reason = cut.reason
            log.info("cut to %s: %s", cut.camera, cut.reason)
        canvas = self.renderer.compose(self._picture(self.director.current, available), now)
        pts = max(last_pts + 1, round((now - start) * self.fps))
        for packet in self.encoder.encode(canvas, pts):
            for output in self.outputs:
                if output.wants_packets:
                    output.send_packet(packet)
        for output in self.outputs:
            if output.wants_pictures:
                output.send_picture(canvas, now)
        self.stats.pictures += 1
        if self._shown_capture_ts:
            self.stats.latencies.append(now - self._shown_capture_ts)
        return pts

    def _available(self, now: float) -> tuple[set[str], str]:
        timeout = self.settings.compositor_frame_timeout_s
        available = {cid for cid, (_, arrived) in self.follower.latest.items() if now - arrived <= timeout and cid in self.cameras}
        if now - self.stats.started < max(3.0, 2 * timeout):
            # capture may start after us: a camera that has not delivered yet is not "lost" yet
            available |= set(self.cameras) - set(self.follower.latest)
        current = self.director.current
        latest = self.follower.latest.get(current) if current else None
        reason = f"no frames for {now - latest[1]:.1f} s" if latest else "no frames received"
        return available, reason

    def _picture(self, camera_id: str | None, available: set[str]) -> ShotPicture:
        camera = self.cameras.get(camera_id or "")
        if camera is None:
            return ShotPicture(None, "program", note="waiting for cameras")
        frame, ref = self._fetch(camera.id)
        note = "" if camera.id in available else "signal lost"
        picture = ShotPicture(frame, camera.name, capture_ts=ref.capture_ts if ref else 0.0, note=note)
        if ref is not None:
            observation = self.fusion.detections_for_frame(camera.id, ref.capture_ts)
            if observation is not None:
                picture.detections, picture.detections_size = observation.detections, (observation.width, observation.height)
        if self.face_labels is not None:
            self.face_labels.take(self.follower.face_matches)
            picture.face_labels = self.face_labels.for_camera(camera.id, time.time())
        if self.renderer.options.pip and not camera.is_master and self.director.wide in available:
            picture.pip_frame, _ = self._fetch(self.director.wide)
        return picture

    def _fetch(self, camera_id: str) -> tuple[np.ndarray | None, FrameRef | None]:
        """Newest frame of a camera; the last good one when nothing new (or it was lapped)."""
        latest = self.follower.latest.get(camera_id)
        frame = self.frames.get(camera_id)
        if latest is None:
            return frame, None
        ref = latest[0]
        if self.shown_seq.get(camera_id) == ref.seq and frame is not None:
            self.stats.repeated += 1
            return frame, ref
        buffer = frame if frame is not None and frame.shape == (ref.height, ref.width, 3) else None
        try:
            frame = self.fetcher.fetch(ref, out=buffer)
        except (FrameGone, ValueError) as error:
            self.stats.frame_drops += 1
            log.debug("frame %s of %s not read: %s", ref.seq, camera_id, error)
            return self.frames.get(camera_id), ref
        self.frames[camera_id] = frame
        self.shown_seq[camera_id] = ref.seq
        if camera_id == self.director.current:
            self._shown_capture_ts = ref.capture_ts
        return frame, ref

    def _publish_health(self, now: float) -> None:
        try:
            self.bus.publish(HEALTH_STREAM, self.health(now))
        except Exception as error:  # health is best effort; never stop the program for it
            log.debug("health not published: %s", error)

    def health(self, now: float | None = None) -> Health:
        now = time.time() if now is None else now
        state: HealthState = "ok" if self.follower.latest else "starting"
        counters = {
            "pictures": float(self.stats.pictures),
            "fps": self.stats.pictures / max(1e-6, now - self.stats.started),
            "skipped_ticks": float(self.stats.skipped_ticks),
            "cuts": float(self.stats.cuts),
            "frame_drops": float(self.stats.frame_drops),
            **{k: float(v) for k, v in self.follower.counters.items()},
        }
        return Health(service="compositor", instance=self.instance, state=state, counters=counters,
                      message=self._on_air_line(counters["fps"]))

    def _on_air_line(self, fps: float) -> str:
        reason = f" ({self.stats.last_reason})" if self.stats.last_reason else ""
        return f"on air: {self.director.current}{reason}, {fps:.1f} fps, {self.stats.cuts} cuts"

    def _finish(self, end: float, last_pts: int) -> None:
        self.stop.set()
        self.stats.ended = end
        for packet in self.encoder.flush():
            for output in self.outputs:
                if output.wants_packets:
                    output.send_packet(packet)
        for output in self.outputs:
            output.close()
        self.encoder.close()
        if self.edl is not None:
            self.edl.close(end)
        self.fetcher.close()
        self.follower.join(timeout=2)
