"""Event notifications through the local stack's SNS (moto): schedules in the site's time zone, one
notification per event with a link to it, cooldowns per rule and track."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from pathlib import Path

import boto3
import pytest

from services.events.event_recorder import EventRecorder
from services.events.notifications import Notifier
from services.events.replay import replay_file
from shared.event_store import EventStore
from shared.schemas import Detection, DetectionSet
from shared.site_config import parse_site
from tests.test_events_footage import FPS, ORIGIN, VIDEO, room_site

LINK_BASE = "https://cams.example.net:8088"


@pytest.fixture()
def topic(aws_env) -> tuple[str, str]:
    """An SNS topic with a queue subscribed to it (to read back what was sent)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name=f"events-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"events-copy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn, url


def sent(queue_url: str) -> list[str]:
    sqs, texts = boto3.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            texts.append(json.loads(message["Body"])["Message"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return texts


@pytest.fixture(scope="module")
def reference() -> list:
    with gzip.open(VIDEO.with_name("one-by-one-person-detection.detections.json.gz"), "rt") as stream:
        return json.load(stream)["reference"]


OFFICE_HOURS = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}]


@pytest.mark.parametrize("timezone, inside", [("America/New_York", False), ("Europe/Paris", True)])
def test_a_schedule_outside_its_window_never_notifies(reference, tmp_path: Path, topic, timezone: str, inside: bool) -> None:
    """The footage plays at 10:00 UTC on a Thursday: 05:00 in New York (outside 08-18), 11:00 in Paris (inside)."""
    arn, queue = topic
    site = room_site([{"name": "office-hours", "zone": "floor", "notify": ["email", "sms"], "schedule": OFFICE_HOURS}],
                     timezone=timezone)
    result = replay_file(VIDEO, reference, site.events, site.scene("room"), tmp_path / "events", ORIGIN, FPS,
                         notifier=Notifier(arn, LINK_BASE), snapshots=False)
    texts = sent(queue)
    if not inside:
        assert texts == [] and result.events == [] and result.recorder.counters.notified == 0
        return
    assert len(texts) == len(result.events) == 3
    assert all(f"{LINK_BASE}/events/" in text for text in texts)
    ids = {text.rsplit("/events/", 1)[1] for text in texts}
    assert ids == {e["id"] for e in result.events}  # each link names its own event
    first = min(texts, key=lambda t: t.split(" at ")[1])
    assert "office-hours" in first and "in floor on room" in first and "2026-01-01 11:00:06 CET" in first


def frame(ts: float, boxes: dict[int, tuple[float, float, float, float]], label: str = "person") -> DetectionSet:
    return DetectionSet(camera_id="gate", seq=int(ts * 10), frame_id=f"gate-{ts}", capture_ts=ts, width=1000, height=1000,
                        model="test", provider="test", latency_ms=0.0,
                        detections=[Detection(label=label, score=0.9, box=box) for box in boxes.values()])


def box_at(x: float, foot_y: float) -> tuple[float, float, float, float]:
    """A person 100 px wide and 400 px tall standing at (x, foot_y), pixels of a 1000x1000 frame."""
    return (x, foot_y - 400, x + 100, foot_y)


def test_cooldown_is_per_rule_and_track_and_never_two_notifications_per_event(tmp_path: Path, topic) -> None:
    arn, queue = topic
    site = parse_site({"site": "t", "cameras": [{"id": "gate", "source": "synthetic", "role": "master",
                                                 "zones": {"yard": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}}],
                       "events": {"close_after_s": 0.5, "rules": [
                           {"name": "yard", "zone": "yard", "notify": ["sms"], "cooldown_s": 60, "inertia": 1},
                           {"name": "yard-too", "zone": "yard", "notify": ["sms"], "cooldown_s": 60, "inertia": 1}]}})
    recorder = EventRecorder(EventStore(tmp_path / "events"), site.events, {"gate": site.scene("gate")},
                             notifier=Notifier(arn, LINK_BASE))
    t = 1_767_261_600.0

    def walk(start: float, moves: dict[str, tuple[float, float, float]], seconds: float = 2.0) -> float:
        """Each person walks in a straight line (x, foot y from, foot y to) over ``seconds``, seen at 10 fps."""
        steps = int(seconds * 10)
        for i in range(steps):
            f = i / (steps - 1)
            recorder.on_detections(frame(start + i / 10, {k: box_at(x, a + (b - a) * f) for k, (x, a, b) in moves.items()}))
        return start + steps / 10

    t = walk(t, {"a": (400, 300, 800)})  # track 1 walks into the yard: one event per rule, one notification each
    t = walk(t, {"a": (400, 800, 300)})  # and out (the events close)
    t = walk(t, {"a": (400, 300, 800)})  # back in within the cooldown, the same track: new events, no notification
    t = walk(t, {"a": (400, 800, 300)})
    t = walk(t, {"a": (400, 300, 300), "b": (700, 300, 800)})  # another person (track 2) walks in: notified
    first_round = sent(queue)
    assert recorder.counters.opened == 6
    assert len(first_round) == 4 and recorder.counters.notifications_suppressed == 2
    assert sorted(text.split(":")[0] for text in first_round) == ["[medium] yard", "[medium] yard",
                                                                    "[medium] yard-too", "[medium] yard-too"]
    notified = [e for e in recorder.store.events() if e["notified_ts"]]
    assert len(notified) == 4 and len({e["id"] for e in notified}) == 4  # one per event
    assert not recorder.store.mark_notified(notified[0]["id"], t, "again")  # an event never notifies twice
    t = walk(t, {"a": (400, 300, 300), "b": (700, 800, 300)})
    t = walk(t, {"a": (400, 300, 300)}, seconds=61)  # the first person waits outside past the cooldown
    walk(t, {"a": (400, 300, 800)})  # and walks in again: notified again
    assert len(sent(queue)) == 2


def test_finished_events_go_to_s3_and_dynamodb_once_and_wait_while_the_cloud_is_away(reference, tmp_path: Path, aws_env) -> None:
    from services.events.cloud_upload import EventUploader

    bucket, table = f"frames-{uuid.uuid4().hex[:8]}", f"frames-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    boto3.client("dynamodb").create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    site = room_site([{"name": "walk-in", "zone": "floor"}])
    result = replay_file(VIDEO, reference[:250], site.events, site.scene("room"), tmp_path / "events", ORIGIN, FPS)
    store = result.recorder.store
    away = EventUploader(store, "t", bucket, table, 30, s3=boto3.client("s3", endpoint_url="http://127.0.0.1:9"))
    assert away.sweep(settled_before=ORIGIN + 3600) == 0 and away.counters.failures == 1  # nothing marked as sent
    uploader = EventUploader(store, "t", bucket, table, 30)
    assert uploader.sweep(settled_before=ORIGIN + 3600) == 2  # the two visits in the first 25 s
    assert uploader.sweep(settled_before=ORIGIN + 3600) == 0  # each event once
    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == 4 and all(k.startswith("events/t/room/2026-01-01/") for k in keys)
    items = boto3.resource("dynamodb").Table(table).scan()["Items"]
    assert {i["pk"] for i in items} == {f"event#{e['id']}" for e in result.events}
    for item in items:
        assert item["kind"] == "event" and item["rule"] == "walk-in" and item["clip_key"] in keys
        assert int(item["expires_at"]) == pytest.approx(float(item["start_ts"]) + 30 * 86_400, abs=1)
        assert "capture_ts" not in item  # never in the camera-latest index, where the cloud-frames panel reads


def test_presigned_links_open_the_snapshot_at_once_and_the_clip_once_the_event_is_over(reference, tmp_path: Path, aws_env, topic) -> None:
    import httpx

    from services.events.cloud_upload import EventUploader
    from shared.event_store import EventStore

    arn, queue = topic
    bucket, table = f"frames-{uuid.uuid4().hex[:8]}", f"frames-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    boto3.client("dynamodb").create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    store = EventStore(tmp_path / "events")  # the replay opens the same folder: the uploader reads what it writes
    uploader = EventUploader(store, "t", bucket, table, 30, link_expiry_s=600)
    site = room_site([{"name": "walk-in", "zone": "floor", "notify": ["sms"]}])
    replay_file(VIDEO, reference[:250], site.events, site.scene("room"), tmp_path / "events", ORIGIN, FPS,
                notifier=Notifier(arn, LINK_BASE, link_for=uploader.presigned_link))
    texts = sent(queue)
    assert len(texts) == 2 and all("snapshot http" in t and " clip http" in t for t in texts)
    snapshot_url = texts[0].split("snapshot ", 1)[1].split(" ", 1)[0]
    clip_url = texts[0].split(" clip ", 1)[1].split(" ", 1)[0]
    expires = int(httpx.URL(clip_url).params["Expires"])
    assert abs(expires - (time.time() + 600)) < 60  # short-lived
    snapshot = httpx.get(snapshot_url)
    assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"  # a JPEG, readable at once
    assert httpx.get(clip_url).status_code == 404  # the clip is not there until the event is over and uploaded
    assert uploader.sweep(settled_before=ORIGIN + 3600) == 2
    clip = httpx.get(clip_url)
    assert clip.status_code == 200 and clip.content[4:8] == b"ftyp"
