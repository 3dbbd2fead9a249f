"""Face watch-list end to end on the local stack, on real footage (Intel IoT devkit sample videos, CC BY 4.0).

moto (the real template deployed) + the local model server (BlazeFace + FaceRes behind Rekognition's face
APIs) + the local event source poller running the unchanged Lambda handler. The woman of
``face-demographics-walking`` is enrolled with `hybridcam faces enroll` from one crop of the clip's last
frame. Frames are marked for face search the way the sampler marks them (the edge's NanoDet saw a
person tall enough to hold a searchable face), then put on Kinesis:

1. her first appearance (the first half of the walk, with the man beside her),
2. other people (a store aisle) a little later,
3. her second appearance (the second half of the walk) after the per-person cooldown has passed,
4. `hybridcam faces remove`, then the whole walk once more.

Expected: exactly one alert per appearance, naming her; nobody else (the man walks beside her in
every frame) ever alerts or matches; after the removal no alert, no match, and no match item left.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import boto3
import cv2
import numpy as np
import pytest

from cloud.local.event_source_poller import EventSourcePoller, load_handler
from devstack.local_cloud import LocalCloud, start_local_cloud
from hybridcam.cli import main as hybridcam
from services.sampler.face_candidates import FaceCandidates
from shared.schemas import CloudFrame, Detection, DetectionSet, FaceMatches, decode_text, frame_id_of
from vision.detectors import load_detector

FACES = Path(__file__).resolve().parent / "data" / "faces"
PERSON = "Walking Woman"
CAMERA = "lobby"
T0 = 1767225600.0
COOLDOWN_S = 600  # the stack's default FaceAlertCooldownSeconds
WALKERS_SPLIT_X = 289  # walking.mp4: the woman's face centre is at x <= 277 in every frame, the man's at x >= 301


@pytest.fixture(scope="module")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    cloud = start_local_cloud(tmp_path_factory.mktemp("faces-run"), f"hc-faces-{uuid.uuid4().hex[:6]}",
                              detector="nanodet", face_search=True)
    try:
        yield cloud
    finally:
        cloud.stop()


def clip(name: str) -> list[np.ndarray]:
    with av.open(str(FACES / name)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


class Camera:
    """Frames -> edge detection -> the sampler's face mark -> CloudFrame records on Kinesis."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.kinesis = boto3.client("kinesis")
        self.detector = load_detector("nanodet", ["CPUExecutionProvider"])
        self.candidates = FaceCandidates(bus=None)
        self.seq = 0
        self.marked = 0

    def send(self, frames: list[np.ndarray], start_ts: float, fps: float) -> None:
        for index, pixels in enumerate(frames):
            capture_ts = start_ts + index / fps
            found = self.detector.detect(pixels)
            height, width = pixels.shape[:2]
            edge = DetectionSet(camera_id=CAMERA, seq=self.seq, frame_id=frame_id_of(CAMERA, self.seq, capture_ts),
                                capture_ts=capture_ts, width=width, height=height, model="nanodet", provider="cpu",
                                latency_ms=0.0, detections=[
                                    Detection(label=name, score=float(score), box=tuple(float(v) for v in box))
                                    for name, score, box in zip(found.labels(), found.scores, found.boxes)])
            marked = self.candidates.holds_face(edge)
            self.marked += marked
            frame = CloudFrame(site="faces-test", frame_id=edge.frame_id, camera_id=CAMERA, seq=self.seq,
                               capture_ts=capture_ts, width=width, height=height, face_candidate=marked,
                               jpeg=cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            self.kinesis.put_record(StreamName=self.stream, Data=frame.encode(), PartitionKey=CAMERA)
            self.seq += 1


def subscribe_alert_copy(topic_arn: str) -> str:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"face-alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def drain(queue_url: str) -> list[str]:
    sqs, bodies = boto3.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def alert_texts(queue_url: str) -> list[str]:
    return [json.loads(body)["Message"] for body in drain(queue_url)]


def face_matches(queue_url: str) -> list[FaceMatches]:
    messages = [decode_text(body) for body in drain(queue_url)]
    return [m for m in messages if isinstance(m, FaceMatches)]


def match_items(table: str) -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return [item for item in items if item.get("kind", {}).get("S") == "face_match"]


def test_watch_list_alerts_once_per_appearance_names_only_the_enrolled_person_and_stops_after_removal(
    local_cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in local_cloud.environment().items():  # the CLI and the in-process handler use the local stack
        monkeypatch.setenv(name, value)
    outputs = local_cloud.outputs
    table, results = outputs["FaceMatchesTableName"], outputs["ResultsQueueUrl"]
    alerts_queue = subscribe_alert_copy(outputs["AlertTopicArn"])
    walk, aisle = clip("walking.mp4"), clip("store-aisle.mp4")

    # Enrolment refuses images without exactly one face, with one sentence, and enrols from one crop.
    cv2.imwrite(str(tmp_path / "two-people.jpg"), walk[-1])
    assert hybridcam(["faces", "enroll", "--name", PERSON, str(tmp_path / "two-people.jpg")]) == 1
    assert "shows 2 faces; crop it to the one person to enrol" in capsys.readouterr().out
    assert hybridcam(["faces", "enroll", "--name", PERSON, str(FACES.parent / "horses.jpg")]) == 1
    assert "shows no face" in capsys.readouterr().out
    assert hybridcam(["faces", "enroll", "--name", PERSON, str(FACES / "enrol-walking-woman.jpg")]) == 0
    assert hybridcam(["faces", "list"]) == 0
    assert f"{PERSON}: 1 face(s)" in capsys.readouterr().out

    camera = Camera(outputs["StreamName"])
    poller = EventSourcePoller(outputs["StreamName"], load_handler(), 10, tmp_path / "checkpoints.json",
                               max_retries=1, retry_delay_s=0.0)
    camera.send(walk[0:17], T0, fps=12)                             # appearance 1 (frames 0-16): seq 0-16
    camera.send(aisle[0:24:4], T0 + 120, fps=3.75)                   # other people: seq 17-22
    camera.send(walk[18:35:2], T0 + 120 + COOLDOWN_S + 60, fps=6)    # appearance 2 (frames 18-34): seq 23-31
    poller.run_once()
    assert poller.dead_lettered == 0
    assert camera.marked >= 26  # the walkers are tall enough in every frame; some shoppers are too

    alerts = [text for text in alert_texts(alerts_queue) if " seen on " in text]  # label alerts ("Person") aside
    assert len(alerts) == 2, alerts  # one per appearance: the cooldown holds the rest of each
    assert all(text.startswith(f"{PERSON} seen on {CAMERA}, similarity ") and text.endswith("%") for text in alerts)
    sent = face_matches(results)
    matches = [match for message in sent for match in message.matches]
    assert len(matches) >= 2 and {match.person for match in matches} == {PERSON}
    assert all(match.similarity >= 80.0 and match.crop_jpeg for match in matches)
    assert sum(len(message.alerts) for message in sent) == 2
    assert not any(17 <= message.seq <= 22 for message in sent)  # no shopper matched
    # Every match is her face: in this clip her face's centre stays left of x=277 and his right of x=301.
    assert all((match.box[0] + match.box[2]) / 2 < WALKERS_SPLIT_X for match in matches)
    assert len(match_items(table)) == len(matches)
    # The frames table's camera-latest index (which the edge identity may query) holds frames only.
    latest = boto3.client("dynamodb").query(
        TableName=outputs["FramesTableName"], IndexName="camera-latest", KeyConditionExpression="camera_id = :c",
        ExpressionAttributeValues={":c": {"S": CAMERA}})["Items"]
    assert latest and all(item["pk"]["S"].startswith("frame#") for item in latest)

    # Removal deletes her faces and her past match items; the walk again raises nothing.
    assert hybridcam(["faces", "remove", PERSON, "--settle-s", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"removed {PERSON}: 1 face(s)" in printed and f"{len(matches)} past match item(s)" in printed
    assert match_items(table) == []
    camera.send(walk[0:35:4], T0 + 10_000, fps=3)
    poller.run_once()
    assert [text for text in alert_texts(alerts_queue) if " seen on " in text] == []
    assert face_matches(results) == []
    assert match_items(table) == []
