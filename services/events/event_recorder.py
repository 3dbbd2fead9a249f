"""Turns rule transitions into stored events: the database row, the best snapshot, the clip, the notification.

The same recorder serves the live service (detections from the bus, packets from the camera's
stream) and the offline replay of a recorded file (services/events/replay.py), so what the tests
measure on real footage is what runs on site.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from services.events.camera_tracks import CameraTracks
from services.events.clip_buffer import ClipRecorder, PacketBuffer, TimedPacket
from services.events.notifications import Notice, Notifier
from services.events.rule_engine import CameraRules, OpenEvent, TrackedObject, Transition
from shared.event_rules import EventsConfig
from shared.event_store import ACTIVITY_BUCKET_S, EventStore
from shared.schemas import CloudConfirmRequest, DetectionSet, FaceMatches
from shared.zones import CameraScene

log = logging.getLogger(__name__)

SHARPNESS_FULL = 150.0  # Laplacian variance at which a crop counts as fully sharp


FrameSource = np.ndarray | Callable[[], np.ndarray | None] | None


@dataclass
class EventCounters:
    opened: int = 0
    closed: int = 0
    clips: int = 0
    clip_failures: int = 0
    snapshots: int = 0
    notified: int = 0
    notifications_suppressed: int = 0
    notification_failures: int = 0
    confirm_requests: int = 0
    confirmed: int = 0
    refused: int = 0
    confirm_timeouts: int = 0


@dataclass
class CameraEvents:
    """Per-camera state: tracks, rules, the pre-roll and the clips being written."""

    scene: CameraScene
    tracks: CameraTracks
    rules: CameraRules
    buffer: PacketBuffer
    template: Any = None  # the stream the camera's packets come from (PyAV), None without a clip feed
    recorders: dict[str, ClipRecorder] = field(default_factory=dict)
    snapshot_quality: dict[str, float] = field(default_factory=dict)
    activity: tuple[int, int] | None = None  # (bucket start, most objects seen in it), written when the bucket ends


@dataclass
class PendingConfirmation:
    event: OpenEvent
    frame_id: str
    deadline: float


class EventRecorder:
    def __init__(self, store: EventStore, config: EventsConfig, scenes: dict[str, CameraScene],
                 camera_names: dict[str, str] | None = None, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.time, ask_cloud: Callable[[CloudConfirmRequest], None] | None = None,
                 site: str = "site") -> None:
        """``ask_cloud``: sends a rule's matching frame for confirmation (None: rules with cloud_confirm notify at once)."""
        self.store = store
        self.ask_cloud = ask_cloud
        self.site = site
        self.pending: dict[str, PendingConfirmation] = {}
        self.config = config
        self.notifier = notifier
        self.camera_names = camera_names or {}
        self.clock = clock
        self.counters = EventCounters()
        self.cameras = {
            camera_id: CameraEvents(scene, CameraTracks(scene), CameraRules(scene, config.rules, config.zone_info,
                                                                            config.close_after_s),
                                    PacketBuffer(config.pre_roll_s))
            for camera_id, scene in scenes.items()
        }

    def set_template(self, camera_id: str, stream: Any) -> None:
        self.cameras[camera_id].template = stream

    def on_packet(self, camera_id: str, item: TimedPacket) -> None:
        camera = self.cameras[camera_id]
        camera.buffer.add(item)
        for event_id, recorder in list(camera.recorders.items()):
            try:
                recorder.write(item)
            except Exception as error:  # noqa: BLE001 (one bad clip must not stop the others)
                self._clip_failed(camera, event_id, recorder, error)
                continue
            if item.ts >= recorder.until_ts:
                self._finish_clip(camera, event_id, recorder)

    def on_detections(self, result: DetectionSet, frame: FrameSource = None) -> list[Transition]:
        """``frame``: the detection's picture, or a callable that fetches it (called only when a snapshot or a
        cloud confirmation needs it)."""
        camera = self.cameras.get(result.camera_id)
        if camera is None:
            return []
        if result.source == "cloud":
            self.on_cloud(result)
            return []
        objects = camera.tracks.update(result)
        self._note_activity(camera, result.capture_ts, len(objects))
        transitions = camera.rules.step(result.capture_ts, objects)
        for transition in transitions:
            self._apply(camera, transition, frame, result)
        self.expire_confirmations(self.clock())
        return transitions

    def on_cloud(self, result: DetectionSet) -> None:
        """The cloud's answer for a frame: a pending confirmation notifies (a wanted label) or is refused;
        any event open on that camera records the cloud's labels."""
        labels = sorted({d.label for d in result.detections})
        for event_id, pending in list(self.pending.items()):
            if pending.frame_id != result.frame_id:
                continue
            confirm = pending.event.rule.cloud_confirm
            wanted = {label.lower() for label in (confirm.labels if confirm else ())}
            confirmed = bool(wanted & {label.lower() for label in labels})
            if not confirmed and confirm is not None and confirm.watch_list:
                self.store.update_event(event_id, cloud_labels=labels)  # a watch-list hit may still come, until the limit
                continue
            del self.pending[event_id]
            self.store.update_event(event_id, cloud_labels=labels, confirmation="confirmed" if confirmed else "refused")
            if confirmed:
                self.counters.confirmed += 1
                self._notify(pending.event, cloud_labels=labels)
            else:
                self.counters.refused += 1
        for state in self.cameras[result.camera_id].rules.states:
            if state.open is not None and labels and state.open.id not in self.pending:
                known = self.store.event(state.open.id)
                merged = sorted(set(labels) | set(known["cloud_labels"] if known else []))
                self.store.update_event(state.open.id, cloud_labels=merged)

    def on_face_matches(self, matches: FaceMatches) -> None:
        """Watch-list hits of a cloud frame: recorded on the event it confirms or the camera's open events, and a
        pending confirmation that waits for the watch list notifies."""
        people = sorted({m.person for m in matches.matches})
        if not people or matches.camera_id not in self.cameras:
            return
        for event_id, pending in list(self.pending.items()):
            confirm = pending.event.rule.cloud_confirm
            if pending.frame_id == matches.frame_id and confirm is not None and confirm.watch_list:
                del self.pending[event_id]
                self.store.update_event(event_id, face_match=", ".join(people), confirmation="confirmed")
                self.counters.confirmed += 1
                self._notify(pending.event, cloud_labels=[f"watch list: {', '.join(people)}"])
        for state in self.cameras[matches.camera_id].rules.states:
            if state.open is not None and state.open.id not in self.pending:
                self.store.update_event(state.open.id, face_match=", ".join(people))

    def expire_confirmations(self, now: float) -> None:
        """A confirmation the cloud did not answer in time: the event stays, unnotified."""
        for event_id, pending in list(self.pending.items()):
            if now >= pending.deadline:
                del self.pending[event_id]
                self.counters.confirm_timeouts += 1
                self.store.update_event(event_id, confirmation="timeout")

    def finish_overdue(self, now: float, grace_s: float = 10.0) -> None:
        """Finish clips whose post-roll ended ``grace_s`` ago without the packets to close them (a stream lost)."""
        for camera in self.cameras.values():
            for event_id, recorder in list(camera.recorders.items()):
                if now > recorder.until_ts + grace_s:
                    self._finish_clip(camera, event_id, recorder)

    def _note_activity(self, camera: CameraEvents, ts: float, objects: int) -> None:
        """The activity bar's figure: one database write per camera and bucket, not one per frame."""
        bucket = int(ts // ACTIVITY_BUCKET_S * ACTIVITY_BUCKET_S)
        if camera.activity is not None and camera.activity[0] != bucket:
            self.store.add_activity(camera.scene.camera_id, camera.activity[0], camera.activity[1])
            camera.activity = None
        camera.activity = (bucket, max(objects, camera.activity[1] if camera.activity else 0))

    def flush(self, ts: float) -> None:
        """Close open events and finish their clips with what has arrived (the service stops)."""
        for camera in self.cameras.values():
            if camera.activity is not None:
                self.store.add_activity(camera.scene.camera_id, camera.activity[0], camera.activity[1])
                camera.activity = None
            for transition in camera.rules.flush(ts):
                self._apply(camera, transition, None)
            for event_id, recorder in list(camera.recorders.items()):
                self._finish_clip(camera, event_id, recorder)

    def _apply(self, camera: CameraEvents, transition: Transition, source: FrameSource,
               result: DetectionSet | None = None) -> None:
        event = transition.event
        frame = None if transition.kind == "closed" else source() if callable(source) else source
        if transition.kind == "opened":
            self.counters.opened += 1
            self.store.open_event(event.id, event.camera_id, event.rule.name, event.place, event.rule.severity,
                                  sorted(event.labels), sorted(event.track_ids), event.start_ts, event.opened_ts)
            self._start_clip(camera, event)
            self._snapshot(camera, event, frame)
            if not self._ask_cloud(event, frame, result):
                self._notify(event)
        elif transition.kind == "grew":
            self.store.update_event(event.id, labels=sorted(event.labels), track_ids=sorted(event.track_ids))
            self._snapshot(camera, event, frame)
        else:
            self.counters.closed += 1
            end_ts = event.last_true_ts
            self.store.update_event(event.id, end_ts=end_ts, state="closed")
            recorder = camera.recorders.get(event.id)
            if recorder is not None:
                recorder.until_ts = end_ts + self.config.post_roll_s
            camera.snapshot_quality.pop(event.id, None)

    def _start_clip(self, camera: CameraEvents, event: OpenEvent) -> None:
        if camera.template is None:
            return
        path = self.store.media_path(event.camera_id, event.id, ".mp4", event.start_ts)
        try:
            recorder = ClipRecorder(path, camera.template, until_ts=float("inf"))
            for item in camera.buffer.since(event.start_ts - self.config.pre_roll_s):
                recorder.write(item)
        except Exception as error:  # noqa: BLE001 (an event without a clip is still an event)
            self.counters.clip_failures += 1
            log.warning("event %s: cannot start its clip: %s", event.id, error)
            return
        camera.recorders[event.id] = recorder

    def _finish_clip(self, camera: CameraEvents, event_id: str, recorder: ClipRecorder) -> None:
        del camera.recorders[event_id]
        try:
            size = recorder.finish()
        except Exception as error:  # noqa: BLE001
            self._clip_failed(camera, event_id, recorder, error)
            return
        if size:
            self.counters.clips += 1
            self.store.attach_file(event_id, "clip", recorder.path, clip_start_ts=recorder.start_ts, clip_end_ts=recorder.end_ts)

    def _clip_failed(self, camera: CameraEvents, event_id: str, recorder: ClipRecorder, error: Exception) -> None:
        camera.recorders.pop(event_id, None)
        recorder.abandon()
        self.counters.clip_failures += 1
        log.warning("event %s: clip abandoned: %s", event_id, error)

    def _snapshot(self, camera: CameraEvents, event: OpenEvent, frame: np.ndarray | None) -> None:
        """Keep the largest, sharpest view of the event's best object."""
        best = event.best
        if frame is None or best is None:
            return
        quality = view_quality(frame, best)
        if quality <= camera.snapshot_quality.get(event.id, -1.0):
            return
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return
        path = self.store.media_path(event.camera_id, event.id, ".jpg", event.start_ts)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(jpeg.tobytes())
        partial.replace(path)
        camera.snapshot_quality[event.id] = quality
        self.store.attach_file(event.id, "snapshot", path)
        self.counters.snapshots += 1

    def _ask_cloud(self, event: OpenEvent, frame: np.ndarray | None, result: DetectionSet | None) -> bool:
        """Send the matching frame for confirmation and hold the notification; False when the rule does not ask
        (or cannot: no frame, no cloud path), so it notifies at once."""
        confirm = event.rule.cloud_confirm
        if confirm is None or self.ask_cloud is None or frame is None or result is None:
            return False
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            return False
        self.ask_cloud(CloudConfirmRequest(
            site=self.site, event_id=event.id, rule=event.rule.name, camera_id=result.camera_id, frame_id=result.frame_id,
            seq=result.seq, capture_ts=result.capture_ts, width=frame.shape[1], height=frame.shape[0], jpeg=jpeg.tobytes(),
            labels=list(confirm.labels)))
        self.pending[event.id] = PendingConfirmation(event, result.frame_id, self.clock() + confirm.within_s)
        self.store.update_event(event.id, confirmation="pending")
        self.counters.confirm_requests += 1
        return True

    def _notify(self, event: OpenEvent, cloud_labels: list[str] | None = None) -> None:
        if self.notifier is None or not event.rule.notify:
            return
        notice = Notice(event.id, event.rule.name, event.rule.severity, event.camera_id,
                        self.camera_names.get(event.camera_id, event.camera_id), event.place, event.start_ts,
                        sorted(event.labels), tuple(sorted(event.track_ids)))
        if not self.notifier.allowed(event.rule.name, notice.track_ids, event.rule.cooldown_s, event.opened_ts):
            self.counters.notifications_suppressed += 1
            return
        text = self.notifier.text(notice, self.config.zone_info)
        if cloud_labels:
            text = f"{text} (cloud: {', '.join(cloud_labels)})"
        if not self.store.mark_notified(event.id, self.clock(), text):
            return  # already sent for this event
        try:
            self.notifier.send(notice, text)
            self.counters.notified += 1
        except Exception as error:  # noqa: BLE001 (SNS away: counted, the event stays)
            self.counters.notification_failures += 1
            log.warning("event %s: notification failed: %s", event.id, error)


def view_quality(frame: np.ndarray, obj: TrackedObject) -> float:
    """Area of the object's box times its sharpness (variance of the Laplacian, capped)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(max(0, min(v, limit))) for v, limit in zip(obj.box, (w, h, w, h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    grey = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return (x1 - x0) * (y1 - y0) * obj.score * min(1.0, sharpness / SHARPNESS_FULL)
