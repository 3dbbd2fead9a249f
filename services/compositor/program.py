"""The live program: follows every camera's frame stream and the detection stream,
directs, renders and encodes one picture per tick of a wall clock at the program rate.

Never stalls: a tick that finds no new frame repeats the last picture; a camera whose
frames stop is cut away from; detections that stop make the director hold the wide shot;
a tick that runs late is skipped (the next picture carries the wall-clock timestamp).
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from services.compositor.director_choice import build_director
from services.compositor.edit_decision_list import EditDecisionList
from services.compositor.encoder import H264Encoder
from services.compositor.face_labels import FaceLabels
from services.compositor.frame_boxes import boxes_for_frame
from services.compositor.fusion import DetectionFusion
from services.compositor.multiview import PROGRAM_CELL, MultiviewRenderer
from services.compositor.outputs.program_output import ProgramOutput
from services.compositor.renderer import ProgramRenderer, RenderOptions, ShotPicture
from services.compositor.settings import CompositorSettings
from shared.cloud_track_labels import CloudTrackLabels
from shared.frame_ring import FrameFetcher, FrameGone
from shared.progress import Progress
from shared.schemas import DetectionSet, FaceMatches, FrameRef, Health, HealthState, SchemaError, decode
from shared.site_config import ResolvedCamera
from shared.stream_bus import DETECTIONS_STREAM, FACE_MATCHES_STREAM, HEALTH_STREAM, StreamBus, frames_stream

log = logging.getLogger(__name__)


class StreamFollower(threading.Thread):
    """One blocking XREAD over all frame streams and the detection stream.

    Keeps the newest FrameRef of each camera (with its arrival time) and queues
    detection sets for the program thread, which owns the fusion state.
    """

    def __init__(self, bus: StreamBus, camera_ids: list[str], stop: threading.Event, history: int = 64) -> None:
        super().__init__(name="compositor-streams", daemon=True)
        self.bus = bus
        self.stop = stop
        self.camera_of = {frames_stream(c): c for c in camera_ids}
        self.latest: dict[str, tuple[FrameRef, float]] = {}
        self.recent: dict[str, deque[FrameRef]] = {c: deque(maxlen=history) for c in camera_ids}  # for the delayed program
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
            self.recent[message.camera_id].append(message)
            self.counters["frames"] += 1
        elif isinstance(message, DetectionSet):
            self.detections.put((message, arrived))
            self.counters[f"detections_{message.source}"] += 1
        elif isinstance(message, FaceMatches) and self.want_face_matches:
            self.face_matches.put((message, arrived))


def frame_at(recent: deque[FrameRef], shown_at: float) -> FrameRef:
    """The newest frame captured no later than ``shown_at`` (the oldest kept one if all are newer)."""
    kept = tuple(recent)  # one atomic copy: the stream thread appends meanwhile
    for ref in reversed(kept):
        if ref.capture_ts <= shown_at:
            return ref
    return kept[0]


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
    lapped_shown_newer: int = 0  # pictures that showed a newer frame (with its own boxes) because the delayed one was lapped
    shown_latency_s: float = 0.0  # program time - capture time of the frame on air (the last one; nothing grows per tick)

    @property
    def fps(self) -> float:
        return self.pictures / (self.ended - self.started) if self.ended > self.started else 0.0


def render_options_from(settings: CompositorSettings) -> RenderOptions:
    return RenderOptions(
        boxes=settings.compositor_overlay_boxes,
        camera_name=settings.compositor_overlay_camera_name,
        clock=settings.compositor_overlay_clock,
        pip=settings.compositor_pip,
        timecode=settings.compositor_timecode,
    )


class Program:
    def __init__(self, settings: CompositorSettings, cameras: list[ResolvedCamera], bus: StreamBus, outputs: list[ProgramOutput],
                 multiview_outputs: list[ProgramOutput] | None = None) -> None:
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
        self.director = build_director(settings, cameras)
        self.delay_s = settings.compositor_program_delay_s
        self.renderer = ProgramRenderer(settings.compositor_width, settings.compositor_height, render_options_from(settings))
        self.face_labels = FaceLabels(settings.compositor_face_label_hold_s) if settings.compositor_face_labels else None
        self.track_labels = CloudTrackLabels()
        self.follower.want_face_matches = self.face_labels is not None
        self.encoder = H264Encoder(
            settings.compositor_width, settings.compositor_height, self.fps, settings.compositor_x264_preset,
            settings.compositor_crf, settings.compositor_keyframe_s, settings.program_max_kbps,
        )
        self.fetcher = FrameFetcher()
        self.frames: dict[str, np.ndarray] = {}
        self.frame_refs: dict[str, FrameRef] = {}  # the reference of the pixels in self.frames
        self._scratch: dict[str, np.ndarray | None] = {}  # a read goes here first: a lapped read never tears a shown frame
        self.shown_seq: dict[str, int] = {}
        self.stats = ProgramStats()
        self.edl: EditDecisionList | None = None
        self.instance = socket.gethostname()
        self._shown_capture_ts = 0.0
        self._shown_ref: FrameRef | None = None
        self.multiview: MultiviewRenderer | None = None
        self.multiview_encoder: H264Encoder | None = None
        self.multiview_outputs = multiview_outputs or []
        if settings.compositor_layout in ("multiview", "both"):
            self.multiview = MultiviewRenderer(settings.compositor_width, settings.compositor_height, list(self.cameras),
                                               self.director.wide, {c.id: c.name for c in cameras})
            self.multiview_encoder = H264Encoder(
                settings.compositor_width, settings.compositor_height, self.fps, settings.compositor_x264_preset,
                settings.compositor_crf, settings.compositor_keyframe_s,
            )
        self.encode_program = settings.compositor_layout != "multiview"
        self._multiview_seq: dict[str, int] = {}
        self._beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="multiview")
        self._ring_warned: set[str] = set()
        self._overlay_log = settings.compositor_overlay_log.open("w", encoding="utf-8") if settings.compositor_overlay_log else None
        self.progress = Progress(stall_after_s=max(2.0, 10.0 / self.fps), fail_after_s=max(10.0, 30.0 / self.fps))

    def run(self, duration_s: float = 0.0) -> ProgramStats:
        self.follower.start()
        for output in self.outputs:
            output.start(self.encoder.stream if self.encode_program or self.multiview_encoder is None else self.multiview_encoder.stream)
        if self.multiview_encoder is not None:
            for output in self.multiview_outputs:
                output.start(self.multiview_encoder.stream)
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
            self.track_labels.learn(detection_set)
        available, lost_reason = self._available(now)
        shown_at = now - self.delay_s  # the program shows (and directs) what was captured this long ago
        cut = self.director.decide(shown_at, self.fusion, available, lost_reason)
        if cut is not None:
            cut = replace(cut, time=now)
            self.stats.cuts += 1
            assert self.edl is not None
            self.edl.record(cut)
            self.stats.last_reason = cut.reason
            log.info("cut to %s: %s", cut.camera, cut.reason)
        picture = self._picture(self.director.current, available, shown_at)
        canvas = self.renderer.compose(picture, now)
        if self._overlay_log is not None:
            self._log_overlay(picture, now)
        pts = max(last_pts + 1, round((now - start) * self.fps))
        multiview_done = None
        if self.multiview is not None and self.multiview_encoder is not None:
            # the multiview is built and encoded beside the program's encode (both release the GIL), joined below
            multiview_done = self._beside.submit(self._multiview_tick, shown_at, canvas, pts, now)
        if self.encode_program:
            self._send(self.encoder, canvas, pts, now, self.outputs)
        if multiview_done is not None:
            multiview_done.result()
        self.stats.pictures += 1
        if self._shown_capture_ts:
            self.stats.shown_latency_s = now - self._shown_capture_ts
        self.progress.beat()
        return pts

    def _multiview_tick(self, shown_at: float, canvas: np.ndarray, pts: int, now: float) -> None:
        assert self.multiview_encoder is not None
        board = self._multiview(shown_at, canvas)
        self._send(self.multiview_encoder, board, pts, now, self.outputs if not self.encode_program else self.multiview_outputs)

    def _multiview(self, shown_at: float, program: np.ndarray | None) -> np.ndarray:
        """Every camera's frame of ``shown_at`` into its cell: a frame the program already copied is reused, any other is
        resized straight from the ring (no copy) and redone next tick if capture overwrote it meanwhile."""
        assert self.multiview is not None
        for camera_id in self.cameras:
            ref = self._delayed_ref(camera_id, shown_at) if self.delay_s > 0 else (self.follower.latest.get(camera_id) or (None,))[0]
            if ref is None or self._multiview_seq.get(camera_id) == ref.seq:
                continue
            if self.shown_seq.get(camera_id) == ref.seq and camera_id in self.frames:
                self.multiview.place(camera_id, self.frames[camera_id])
                self._multiview_seq[camera_id] = ref.seq
                continue
            try:
                borrowed = self.fetcher.borrow(ref)
                self.multiview.place(camera_id, borrowed.pixels)
            except (FrameGone, ValueError):
                self.stats.frame_drops += 1
                continue
            if borrowed.still_valid():
                self._multiview_seq[camera_id] = ref.seq
        if PROGRAM_CELL in self.multiview.cells:
            self.multiview.place(PROGRAM_CELL, program)
        return self.multiview.finish(self.director.current)

    def _warn_if_ring_too_short(self, camera_id: str, ref: FrameRef) -> None:
        """Once per camera: the ring lapped a frame the delayed program still wanted (ring shorter than the delay). The
        program then shows the oldest newer frame still held, with that frame's own boxes."""
        if self.delay_s <= 0 or camera_id in self._ring_warned:
            return
        latest = self.follower.latest.get(camera_id)
        if latest is not None and latest[0].seq - ref.seq >= 2:
            self._ring_warned.add(camera_id)
            behind = latest[0].seq - ref.seq
            camera = self.cameras[camera_id]
            log.warning("camera %s: the frame %d frames behind the newest was already overwritten: its ring holds less than the "
                        "program delay (%.2f s at %g fps); the program shows newer frames (each with its own boxes) until "
                        "HYBRIDCAM_CAPTURE_RING_S is above %.2f s (or HYBRIDCAM_CAPTURE_RING_SLOTS above %d)", camera_id, behind,
                        self.delay_s, camera.fps, self.delay_s + 0.3, behind + 4)

    def _log_overlay(self, picture: ShotPicture, now: float) -> None:
        ref = self._shown_ref
        if ref is None or self._overlay_log is None:
            return
        boxes = [[round(v, 1) for v in d.box] for d in picture.detections or []]
        # seq: the frame whose boxes are drawn; pixels_seq: the frame whose pixels are shown (-1: none yet)
        entry = {"now": round(now, 3), "camera": ref.camera_id, "seq": ref.seq, "pixels_seq": self.shown_seq.get(ref.camera_id, -1),
                 "capture_ts": ref.capture_ts, "crop": picture.crop,
                 "size": picture.detections_size, "predicted": picture.boxes_predicted, "boxes": boxes}
        self._overlay_log.write(json.dumps(entry) + "\n")

    @staticmethod
    def _send(encoder: H264Encoder, canvas: np.ndarray, pts: int, now: float, outputs: list[ProgramOutput]) -> None:
        for packet in encoder.encode(canvas, pts):
            for output in outputs:
                if output.wants_packets:
                    output.send_packet(packet)
        for output in outputs:
            if output.wants_pictures:
                output.send_picture(canvas, now)

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

    def _picture(self, camera_id: str | None, available: set[str], shown_at: float) -> ShotPicture:
        camera = self.cameras.get(camera_id or "")
        if camera is None:
            return ShotPicture(None, "program", note="waiting for cameras")
        frame, ref = self._fetch(camera.id, shown_at)
        self._shown_ref = ref
        note = "" if camera.id in available else "signal lost"
        picture = ShotPicture(frame, camera.name, capture_ts=ref.capture_ts if ref else 0.0, note=note, crop=self.director.crop())
        if ref is not None:
            boxes = boxes_for_frame(self.fusion, camera.id, ref.capture_ts, ref.width, ref.height, ref.frame_id)
            if boxes is not None:
                picture.detections, picture.detections_size, picture.boxes_predicted = boxes.detections, boxes.size, boxes.predicted
                picture.track_labels = self.track_labels.for_camera(camera.id)
        if self.face_labels is not None:
            self.face_labels.take(self.follower.face_matches)
            picture.face_labels = self.face_labels.for_camera(camera.id, time.time())
        if self.renderer.options.pip and not camera.is_master and self.director.wide in available:
            picture.pip_frame, _ = self._fetch(self.director.wide, shown_at)
        return picture

    def _delayed_ref(self, camera_id: str, shown_at: float) -> FrameRef | None:
        recent = self.follower.recent.get(camera_id)
        if not recent:
            latest = self.follower.latest.get(camera_id)
            return latest[0] if latest else None
        return frame_at(recent, shown_at)

    def _fetch(self, camera_id: str, shown_at: float) -> tuple[np.ndarray | None, FrameRef | None]:
        """The camera's frame of ``shown_at`` and the reference *of the pixels returned*, so boxes are always drawn for
        the frame shown. When capture already lapped that frame, the oldest newer frame still in the ring; when none
        reads, the last good frame with its own reference."""
        frame, shown = self.frames.get(camera_id), self.frame_refs.get(camera_id)
        wanted = self._delayed_ref(camera_id, shown_at) if self.delay_s > 0 else (self.follower.latest.get(camera_id) or (None,))[0]
        if wanted is None:
            return frame, shown
        if shown is not None and shown.seq == wanted.seq and frame is not None:
            self.stats.repeated += 1
            return frame, shown
        for ref in self._readable_from(camera_id, wanted):
            if shown is not None and frame is not None and ref.seq <= shown.seq:
                return frame, shown  # never step back to an older frame than the one on screen
            scratch = self._scratch.get(camera_id)
            buffer = scratch if scratch is not None and scratch.shape == (ref.height, ref.width, 3) else None
            try:
                read = self.fetcher.fetch(ref, out=buffer)  # a seqlock read: raises when the slot no longer holds ref.seq
            except (FrameGone, ValueError) as error:
                self.stats.frame_drops += 1
                log.debug("frame %s of %s not read: %s", ref.seq, camera_id, error)
                self._warn_if_ring_too_short(camera_id, wanted)
                continue
            # the frame read becomes the one shown; the previous picture's buffer is the next read's scratch
            self._scratch[camera_id] = frame if frame is not None and frame is not read else None
            self.frames[camera_id], self.frame_refs[camera_id], self.shown_seq[camera_id] = read, ref, ref.seq
            if ref.seq != wanted.seq:
                self.stats.lapped_shown_newer += 1
            if camera_id == self.director.current:
                self._shown_capture_ts = ref.capture_ts
            return read, ref
        return frame, shown

    def _readable_from(self, camera_id: str, wanted: FrameRef) -> list[FrameRef]:
        """``wanted``, then the newer frames of the camera in capture order, skipping those the ring already lapped."""
        recent = tuple(self.follower.recent.get(camera_id) or ())
        newer = [ref for ref in recent if ref.seq > wanted.seq]
        return [ref for ref in (wanted, *newer) if not self.fetcher.lapped(ref)][:4] or [wanted]

    def _publish_health(self, now: float) -> None:
        try:
            self.bus.publish(HEALTH_STREAM, self.health(now))
        except Exception as error:  # health is best effort; never stop the program for it
            log.debug("health not published: %s", error)

    def health(self, now: float | None = None) -> Health:
        now = time.time() if now is None else now
        state, message = self.health_state()
        counters = {
            "pictures": float(self.stats.pictures),
            "fps": self.stats.pictures / max(1e-6, now - self.stats.started),
            "skipped_ticks": float(self.stats.skipped_ticks),
            "cuts": float(self.stats.cuts),
            "frame_drops": float(self.stats.frame_drops),
            "lapped_shown_newer": float(self.stats.lapped_shown_newer),
            "progress_age_s": round(self.progress.age_s(), 1),
            "shown_latency_s": round(self.stats.shown_latency_s, 3),
            **{k: float(v) for k, v in self.follower.counters.items()},
        }
        return Health(service="compositor", instance=self.instance, state=state,
                      counters=counters, message=message or self._on_air_line(counters["fps"]))

    def health_state(self) -> tuple[HealthState, str]:
        """From the age of the last picture: a program that stopped cutting is not "ok"."""
        if not self.follower.latest and self.progress.age_s() <= self.progress.stall_after_s:
            return "starting", ""
        if not self.follower.is_alive() and self.stats.started and not self.stop.is_set():
            return "failed", "the stream follower stopped"
        warnings = [w for w in (output.warning() for output in (*self.outputs, *self.multiview_outputs)) if w]
        return self.progress.state("degraded" if warnings else "ok", "; ".join(warnings))

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
        if self.multiview_encoder is not None:
            for packet in self.multiview_encoder.flush():
                for output in (self.outputs if not self.encode_program else self.multiview_outputs):
                    if output.wants_packets:
                        output.send_packet(packet)
        for output in [*self.outputs, *self.multiview_outputs]:
            output.close()
        self.encoder.close()
        if self._overlay_log is not None:
            self._overlay_log.close()
        if self.multiview_encoder is not None:
            self.multiview_encoder.close()
        self._beside.shutdown(wait=True)
        if self.edl is not None:
            self.edl.close(end)
        self.fetcher.close()
        self.follower.join(timeout=2)
