"""Cloud confirmation: a rule's matching frame goes to the cloud at once (outside the sampling budget, its own
reason), and the notification waits for the cloud's label within the rule's time limit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from services.events.event_recorder import EventRecorder
from services.events.notifications import Notifier
from services.sampler.confirmations import confirmation_records
from shared.event_store import EventStore
from shared.schemas import CloudConfirmRequest, CloudFrame, Detection, DetectionSet, decode_as
from shared.site_config import parse_site
from shared.stream_bus import CLOUD_REQUESTS_STREAM, StreamBus
from tests.test_events_notifications import LINK_BASE, box_at, sent, topic  # noqa: F401 (fixture)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def frame_set(ts: float, boxes: list, source: str = "edge", frame_id: str | None = None) -> DetectionSet:
    return DetectionSet(camera_id="gate", seq=int(ts * 10) % 100_000, frame_id=frame_id or f"gate-{ts:.1f}", capture_ts=ts,
                        width=1000, height=1000, source=source, model="t", provider="t", latency_ms=0.0,
                        detections=[Detection(label=label, score=0.9, box=box) for label, box in boxes])


def test_the_notification_waits_for_the_clouds_label_and_is_dropped_when_refused_or_late(tmp_path: Path, topic) -> None:  # noqa: F811
    arn, queue = topic
    site = parse_site({"site": "t", "cameras": [{"id": "gate", "source": "synthetic", "role": "master",
                                                 "zones": {"yard": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}}],
                       "events": {"close_after_s": 0.5, "rules": [
                           {"name": "intruder", "zone": "yard", "notify": ["sms"], "cooldown_s": 0, "inertia": 1,
                            "cloud_confirm": {"labels": ["Person"], "within_s": 5}}]}})
    asked: list[CloudConfirmRequest] = []
    clock = Clock(1_767_261_600.0)
    recorder = EventRecorder(EventStore(tmp_path), site.events, {"gate": site.scene("gate")}, notifier=Notifier(arn, LINK_BASE),
                             clock=clock, ask_cloud=asked.append, site="t")
    picture = np.full((1000, 1000, 3), 120, np.uint8)

    def visit(start: float) -> float:
        t = start
        for i in range(10):  # walks in, stays, walks out (a new track each visit: the boxes jump)
            recorder.on_detections(frame_set(t, [("person", box_at(400, 300 + i * 50))]), picture)
            t += 0.1
        for _ in range(10):
            recorder.on_detections(frame_set(t, []))
            t += 0.1
        return t

    t = visit(clock.now)
    assert len(asked) == 1 and sent(queue) == []  # asked at once, notification held
    request = asked[0]
    assert cv2.imdecode(np.frombuffer(request.jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (1000, 1000, 3)
    recorder.on_detections(frame_set(request.capture_ts, [("Person", (400, 300, 500, 700))], "cloud", request.frame_id))
    [text] = sent(queue)
    assert "intruder" in text and "(cloud: Person)" in text and f"/events/{request.event_id}" in text
    first = recorder.store.event(request.event_id)
    assert first["confirmation"] == "confirmed" and first["cloud_labels"] == ["Person"]

    t = visit(t + 5)
    recorder.on_detections(frame_set(asked[1].capture_ts, [("Dog", (400, 300, 500, 700))], "cloud", asked[1].frame_id))
    assert sent(queue) == [] and recorder.store.event(asked[1].event_id)["confirmation"] == "refused"

    visit(t + 5)
    clock.now += 6  # no answer within 5 s
    recorder.expire_confirmations(clock.now)
    assert sent(queue) == [] and recorder.store.event(asked[2].event_id)["confirmation"] == "timeout"
    assert (recorder.counters.confirmed, recorder.counters.refused, recorder.counters.confirm_timeouts) == (1, 1, 1)


def test_the_sampler_sends_a_confirmation_request_as_a_cloud_frame(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    bus.ensure_group(CLOUD_REQUESTS_STREAM, "sampler", "0")
    jpeg = cv2.imencode(".jpg", np.zeros((90, 160, 3), np.uint8))[1].tobytes()
    bus.publish(CLOUD_REQUESTS_STREAM, CloudConfirmRequest(site="t", event_id="e1", rule="r", camera_id="gate", frame_id="gate-1-1",
                                                           seq=1, capture_ts=1.0, width=160, height=90, jpeg=jpeg, labels=["Person"]))
    records, read = confirmation_records(bus, "sampler", "c", "t")
    assert len(records) == 1 and len(read) == 1 and records[0].partition_key == "t/gate"  # site/camera, as every sampled frame
    frame = decode_as(records[0].data, CloudFrame)
    assert (frame.frame_id, frame.jpeg, frame.site) == ("gate-1-1", jpeg, "t")
    bus.close()


def test_a_watch_list_confirmation_waits_for_the_face_match_and_records_the_name(tmp_path: Path, topic) -> None:  # noqa: F811
    from shared.schemas import FaceMatch, FaceMatches

    arn, queue = topic
    site = parse_site({"site": "t", "cameras": [{"id": "gate", "source": "synthetic", "role": "master",
                                                 "zones": {"yard": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}}],
                       "events": {"rules": [{"name": "known-face", "zone": "yard", "notify": ["email"], "inertia": 1,
                                             "cloud_confirm": {"watch_list": True, "within_s": 5}}]}})
    asked: list[CloudConfirmRequest] = []
    recorder = EventRecorder(EventStore(tmp_path), site.events, {"gate": site.scene("gate")}, notifier=Notifier(arn, LINK_BASE),
                             clock=Clock(1_767_261_600.0), ask_cloud=asked.append, site="t")
    recorder.on_detections(frame_set(1_767_261_600.0, [("person", box_at(400, 800))]), np.full((1000, 1000, 3), 90, np.uint8))
    [request] = asked
    recorder.on_detections(frame_set(request.capture_ts, [("Person", (400, 300, 500, 700))], "cloud", request.frame_id))
    assert sent(queue) == [] and recorder.store.event(request.event_id)["confirmation"] == "pending"  # the label is not enough
    recorder.on_face_matches(FaceMatches(site="t", frame_id=request.frame_id, camera_id="gate", seq=request.seq,
                                         capture_ts=request.capture_ts, processed_ts=request.capture_ts + 1, width=1000,
                                         height=1000, matches=[FaceMatch(person="Ana Lima", face_id="f1", similarity=97.0,
                                                                         box=(420.0, 320.0, 470.0, 380.0))]))
    [text] = sent(queue)
    assert "(cloud: watch list: Ana Lima)" in text
    event = recorder.store.event(request.event_id)
    assert event["face_match"] == "Ana Lima" and event["confirmation"] == "confirmed" and event["cloud_labels"] == ["Person"]
