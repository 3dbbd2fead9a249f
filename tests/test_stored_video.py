"""Stored-video analysis end to end on the local stack: moto (S3, SNS, SQS, CloudFormation), the local
Rekognition Video stand-in running the real cloud-tier detector, and `hybridcam analyze-video`.

The clip is a real one (tests/data/video/person-walks-in-40s.mp4, see tests/data/video/README.md): an
person leaving the room, an empty room for about 6 s, then a person walks in, stays about 25 s and leaves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest

from cloud.deploy import deploy_stack
from cloud.local.model_server import LocalModelServer, start_in_thread
from cloud.stored_video.highlights import choose_segments
from cloud.stored_video.timeline import read_timeline
from cloud.stored_video.upload import video_key
from hybridcam.cli import main as hybridcam_main

CLIP = Path(__file__).parent / "data" / "video" / "person-walks-in-40s.mp4"
STACK = "hc-video-test"


@pytest.fixture(scope="module")
def video_stack(moto_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], LocalModelServer]]:  # type: ignore[no-untyped-def]
    environment = {**moto_server.environment(), "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        server = start_in_thread(0)
        patch.setenv("AWS_ENDPOINT_URL_REKOGNITION", server.url)
        try:
            outputs = deploy_stack(STACK, {}, "us-east-1", zip_path=_code_zip(tmp_path_factory.mktemp("code")),
                                   waiter_delay_s=1, say=lambda _: None)
            yield outputs, server
        finally:
            server.stop()


def _code_zip(folder: Path) -> Path:
    from cloud.packaging import build_lambda_zip

    return build_lambda_zip(folder / "code.zip", with_dependencies=False)


def analyse(*args: str) -> int:
    return hybridcam_main(["analyze-video", *args, "--stack-name", STACK, "--timeout", "120"])


def test_a_clip_becomes_timeline_report_annotated_copy_and_highlights(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs, _ = video_stack
    code = analyse(str(CLIP), "--output", str(tmp_path), "--highlights", "2", "--segment-s", "5")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"face search skipped: the watch-list collection {STACK}-faces does not exist" in printed
    folder = tmp_path / CLIP.stem
    assert not (folder / "faces.jsonl").exists()

    timeline = read_timeline(folder / "labels.jsonl", 40.0)
    people = timeline.per_second("people", frozenset({"Person"}))
    assert people[3:9].sum() == 0, "the room is empty between the two people"
    assert people[10:35].min() >= 1, "the person who walks in is seen while they stay"

    # The reel holds the stretches where the reference sees the most people: each chosen piece of the EDL
    # lies where the per-second people count is at its highest.
    pieces = [json.loads(line) for line in (folder / "highlights-edl.jsonl").read_text().splitlines()]
    assert len(pieces) == 2 and [p["source"] for p in pieces] == [CLIP.name] * 2
    best = choose_segments(people, 2, 5.0, 40.0)
    assert [(p["source_start_s"], p["source_end_s"]) for p in pieces] == [(s.start_s, s.end_s) for s in best]
    for piece in pieces:
        window = people[int(piece["source_start_s"]): int(piece["source_end_s"])]
        assert window.mean() == np.convolve(people, np.ones(5) / 5, "valid").max()
        assert piece["source_end_s"] <= 3 or piece["source_start_s"] >= 9, "no piece shows the empty room"

    reel = ffprobe(folder / f"{CLIP.stem}-highlights.mp4")
    assert reel["codec_name"] == "h264" and 8.0 <= float(reel["duration"]) <= 10.5  # 2 x 5 s less one 0.5 s fade
    annotated = ffprobe(folder / f"{CLIP.stem}-annotated.mp4")
    assert annotated["codec_name"] == "h264" and abs(float(annotated["duration"]) - 40.0) < 1.0

    report = (folder / "report.html").read_text()
    assert "data:image/png;base64," in report and "data:image/jpeg;base64," in report and "Person" in report
    assert "http" not in report.split("<body>", 1)[1], "the report is self-contained"

    # the upload is complete and nothing half-uploaded stays behind
    s3 = boto3.client("s3")
    bucket = outputs["FramesBucketName"]
    assert s3.head_object(Bucket=bucket, Key=video_key(CLIP))["ContentLength"] == CLIP.stat().st_size
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not (folder / "upload-state.json").exists() and not (folder / "job.json").exists()


DEMO_SITE = """
site: stored-video-demo
defaults: {width: 640, height: 360, fps: 8}
synthetic_scene: {seed: 7, people: 3, scenario: walkthrough}
cameras:
  - {id: wide, role: master, source: synthetic}
  - {id: north-west, source: synthetic, covers: {master: wide, region: [0.0, 0.0, 0.5, 0.5]}}
"""
DEMO_S = 18.0


def record_demo_program(folder: Path, redis_url: str) -> Path:
    """A real demo run, small: capture (two synthetic 640x360 cameras) and the compositor recording a 640x360
    program in 6 s MP4 segments, as `hybridcam demo` runs them; returns the recordings folder."""
    site = folder / "site.yaml"
    site.write_text(DEMO_SITE)
    program = folder / "program"
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_url, "HYBRIDCAM_SITE_FILE": str(site),
           "HYBRIDCAM_COMPOSITOR_FPS": "8", "HYBRIDCAM_COMPOSITOR_WIDTH": "640", "HYBRIDCAM_COMPOSITOR_HEIGHT": "360",
           "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mp4", "HYBRIDCAM_COMPOSITOR_SEGMENT_S": "6",
           "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(program), "HYBRIDCAM_COMPOSITOR_MJPEG_PORT": "0",
           "HYBRIDCAM_COMPOSITOR_H264_PORT": "0", "PYTHONUNBUFFERED": "1"}
    processes = {name: subprocess.Popen([sys.executable, "-m", "hybridcam", *args], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                 for name, args in (("capture", ["capture", "--duration", str(DEMO_S + 2)]),
                                    ("compositor", ["compositor", "--duration", str(DEMO_S)]))}
    for name, process in processes.items():
        log, _ = process.communicate(timeout=90)
        assert process.returncode == 0, f"{name} failed:\n{log[-2000:]}"
    return program / "recordings"


def test_a_program_recording_from_a_demo_run_is_joined_and_analysed(
    video_stack: tuple[dict[str, str], LocalModelServer], redis_server, tmp_path: Path,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    recordings = record_demo_program(tmp_path, redis_server.url)
    segments = sorted(recordings.glob("program-*.mp4"))
    assert len(segments) >= 3, "an 18 s program in 6 s segments"
    recording = segments[0].name.rsplit("-", 1)[0]
    monkeypatch.setenv("HYBRIDCAM_VIDEO_RECORDINGS_DIR", str(recordings))
    code = analyse("--recording", "last", "--output", str(tmp_path / "out"), "--highlights", "2", "--segment-s", "3")
    printed = capsys.readouterr().out
    assert code == 0, printed
    joined = ffprobe(tmp_path / "out" / f"{recording}.mp4")
    assert joined["codec_name"] == "h264" and (int(joined["width"]), int(joined["height"])) == (640, 360)
    assert abs(float(joined["duration"]) - DEMO_S) < 2.0
    folder = tmp_path / "out" / recording
    duration = float(joined["duration"])

    timeline = read_timeline(folder / "labels.jsonl", duration)
    people = timeline.per_second("people", frozenset({"Person"}))
    assert people.max() >= 1, "the detector sees the synthetic people in the program"
    pieces = [json.loads(line) for line in (folder / "highlights-edl.jsonl").read_text().splitlines()]
    best = choose_segments(people, 2, 3.0, duration)
    assert [(p["source_start_s"], p["source_end_s"]) for p in pieces] == [(s.start_s, s.end_s) for s in best]
    windows = np.convolve(people, np.ones(3) / 3, "valid")
    means = [people[int(p["source_start_s"]): int(p["source_end_s"])].mean() for p in pieces]
    assert pieces and max(means) == pytest.approx(windows.max()), f"the reel holds the window where the reference sees the most people: {people}"
    assert min(means) > 0, f"no piece shows an empty program: {people}"
    reel = ffprobe(folder / f"{recording}-highlights.mp4")
    expected_s = sum(p["source_end_s"] - p["source_start_s"] for p in pieces) - 0.5 * (len(pieces) - 1)
    assert reel["codec_name"] == "h264" and abs(float(reel["duration"]) - expected_s) < 1.0
    annotated = ffprobe(folder / f"{recording}-annotated.mp4")
    assert annotated["codec_name"] == "h264" and abs(float(annotated["duration"]) - duration) < 1.0
    report = (folder / "report.html").read_text()
    assert "Person" in report and "data:image/jpeg;base64," in report


def test_a_file_that_is_not_a_video_is_refused_before_upload(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all")
    assert analyse(str(fake), "--output", str(tmp_path)) == 2
    printed = capsys.readouterr().out.strip()
    assert printed == "hybridcam analyze-video: notes.mp4 is not a video FFmpeg can read (Invalid data found when processing input)."
    assert _uploaded_videos(video_stack[0]) == set() or video_key(fake) not in _uploaded_videos(video_stack[0])


def test_a_video_rekognition_would_refuse_is_named_with_its_reason(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mpeg4 = tmp_path / "old-camera.mp4"  # MPEG-4 Part 2, not H.264
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(CLIP), "-t", "2", "-c:v", "mpeg4", str(mpeg4)], check=True)
    assert analyse(str(mpeg4), "--output", str(tmp_path)) == 2
    printed = capsys.readouterr().out
    assert "old-camera.mp4 is encoded with mpeg4; Rekognition Video takes H.264 only" in printed
    assert video_key(mpeg4) not in _uploaded_videos(video_stack[0])


def test_a_failed_job_says_why_and_removes_its_upload(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs, server = video_stack
    clip = tmp_path / "short.mp4"
    shutil.copy(CLIP, clip)
    httpx.post(f"{server.url}/_control/video-jobs", json={"fail_next": 1}).raise_for_status()
    assert analyse(str(clip), "--output", str(tmp_path)) == 1
    printed = capsys.readouterr().out
    assert "Rekognition could not analyse the video: job" in printed and "failed: Internal server error." in printed
    assert video_key(clip) not in _uploaded_videos(outputs)


def test_a_lost_notification_times_out_and_the_job_resumes_by_id(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, server = video_stack
    clip = tmp_path / "lost.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(CLIP), "-t", "6", "-c", "copy", str(clip)], check=True)
    httpx.post(f"{server.url}/_control/video-jobs", json={"drop_notifications": 1}).raise_for_status()
    code = hybridcam_main(["analyze-video", str(clip), "--output", str(tmp_path), "--stack-name", STACK,
                           "--timeout", "15", "--highlights", "1", "--segment-s", "2"])
    printed = capsys.readouterr().out
    assert code == 3, printed
    assert "no completion message came within 15 s; the job goes on in the cloud: resume with" in printed
    job_id = printed.split("--job-id ", 1)[1].split("`", 1)[0]
    assert analyse(str(clip), "--job-id", job_id, "--output", str(tmp_path), "--highlights", "1", "--segment-s", "2") == 0
    assert (tmp_path / "lost" / "labels.jsonl").exists()


def _uploaded_videos(outputs: dict[str, str]) -> set[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=outputs["FramesBucketName"], Prefix="videos/")
    return {item["Key"] for item in listing.get("Contents", [])}


def ffprobe(path: Path) -> dict[str, str]:
    answer = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,width,height:format=duration", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    data = json.loads(answer.stdout)
    return {**data["streams"][0], "duration": data["format"]["duration"]}


class CountingS3:
    """The real (moto) S3 client, counting the parts it is asked to upload."""

    def __init__(self, interrupt_after_parts: int | None = None) -> None:
        self.client = boto3.client("s3")
        self.parts_sent: list[int] = []
        self.interrupt_after_parts = interrupt_after_parts

    def upload_part(self, **request):  # type: ignore[no-untyped-def]
        if self.interrupt_after_parts is not None and len(self.parts_sent) >= self.interrupt_after_parts:
            raise KeyboardInterrupt
        self.parts_sent.append(request["PartNumber"])
        return self.client.upload_part(**request)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.client, name)


def test_an_interrupted_upload_resumes_with_the_missing_parts_only(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path
) -> None:
    from cloud.stored_video.upload import PART_BYTES, upload_video

    bucket = video_stack[0]["FramesBucketName"]
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(1).bytes(2 * PART_BYTES + 1000))  # three parts
    state = tmp_path / "upload-state.json"
    interrupted = CountingS3(interrupt_after_parts=1)
    with pytest.raises(KeyboardInterrupt):
        upload_video(interrupted, big, bucket, state)
    assert interrupted.parts_sent == [1] and state.exists()

    resumed = CountingS3()
    key = upload_video(resumed, big, bucket, state)
    assert resumed.parts_sent == [2, 3], "the part S3 already holds is not sent again"
    assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == big.read_bytes()
    assert not state.exists() and boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_the_video_permissions_are_least_privilege() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    resources = yaml.load((Path(__file__).parents[1] / "cloud" / "cfn" / "template.yaml").read_text(), Loader)["Resources"]
    role = resources["VideoJobsRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "rekognition.amazonaws.com"} and "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    [policy] = role["Policies"]
    assert [s["Action"] for s in policy["PolicyDocument"]["Statement"]] == ["sns:Publish"]

    operator = resources["VideoAnalysisOperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    actions = {action for statement in operator for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])}
    assert actions == {
        "s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
        "rekognition:StartLabelDetection", "rekognition:GetLabelDetection", "iam:PassRole",
        "rekognition:StartFaceSearch", "rekognition:GetFaceSearch", "rekognition:DescribeCollection",
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "cloudformation:DescribeStacks",
    }
    assert all("*" not in action for action in actions)
    assert "KmsMasterKeyId" not in resources["VideoJobsTopic"]["Properties"], "Rekognition cannot publish to an aws/sns-encrypted topic"


# -- face search in stored video ----------------------------------------------------------------------------

FACES = Path(__file__).parent / "data" / "faces"
FACE_CLIP_FPS = 10
# (first second, last second, what): a man who is not enrolled, the enrolled woman, then another unenrolled face
FACE_CLIP_PARTS = ((0, 3, "man"), (3, 7, "woman"), (7, 10, "astronaut"))
MATCH_GREEN = (60, 220, 60)  # BGR of the named watch-list boxes in the annotated copy


def face_pictures() -> dict[str, np.ndarray]:
    import av
    import cv2

    with av.open(str(FACES / "walking.mp4")) as container:
        last = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)][-1]
    astronaut = cv2.imread(str(Path(__file__).parent / "data" / "astronaut.png"))
    return {"man": np.ascontiguousarray(last[:, 260:480]),  # the right half of walking.mp4's last frame: the man only
            "woman": cv2.imread(str(FACES / "enrol-walking-woman.jpg")),
            "astronaut": cv2.resize(astronaut, (270, 270), interpolation=cv2.INTER_AREA)}


PAN_PX = 100  # how far each picture travels while it is on screen, left to right (a face width or so a second)


def picture_left(picture: np.ndarray, time_s: float, start_s: float, end_s: float) -> int:
    """Where the panned picture's left edge is at `time_s`: it moves PAN_PX to the right across its part."""
    return int((480 - picture.shape[1] - PAN_PX) / 2 + PAN_PX * (time_s - start_s) / (end_s - start_s))


def make_face_clip(path: Path) -> None:
    """A 10 s, 480x270 H.264 clip that pans over three committed face pictures in turn (see FACE_CLIP_PARTS)."""
    import av

    pictures = face_pictures()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FACE_CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 480, 270, "yuv420p"
        for index in range(10 * FACE_CLIP_FPS):
            time_s = index / FACE_CLIP_FPS
            start, end, name = next(part for part in FACE_CLIP_PARTS if part[0] <= time_s < part[1])
            picture = pictures[name]
            canvas = np.full((270, 480, 3), 90, np.uint8)
            left, top = picture_left(picture, time_s, start, end), (270 - picture.shape[0]) // 2
            canvas[top:top + picture.shape[0], left:left + picture.shape[1]] = picture
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def green_box_pixels(path: Path, time_s: float) -> int:
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= time_s:
                picture = frame.to_ndarray(format="bgr24").astype(int)
                blue, green, red = picture[..., 0], picture[..., 1], picture[..., 2]
                return int(((green > 170) & (red < 120) & (blue < 120)).sum())
    raise AssertionError(f"no frame at {time_s} s")


def test_faces_on_the_watch_list_are_found_in_the_video_and_nobody_else(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outputs, _ = video_stack
    collection = outputs["FaceCollectionId"]
    rekognition = boto3.client("rekognition")
    assert hybridcam_main(["faces", "enroll", "--name", "Walking Woman", str(FACES / "enrol-walking-woman.jpg"),
                           "--stack-name", STACK]) == 0
    monkeypatch.setattr("cloud.stored_video.rekognition_job.PAGE_SIZE", 3)  # GetFaceSearch answers in several pages
    clip = tmp_path / "faces-pan.mp4"
    make_face_clip(clip)
    try:
        code = analyse(str(clip), "--output", str(tmp_path), "--highlights", "1", "--segment-s", "2")
        printed = capsys.readouterr().out
    finally:
        rekognition.delete_collection(CollectionId=collection)
    assert code == 0, printed
    assert f"face search: 1 enrolled face(s) in {collection}" in printed
    folder = tmp_path / clip.stem

    matches = [json.loads(line) for line in (folder / "faces.jsonl").read_text().splitlines()]
    assert {match["name"] for match in matches} == {"Walking Woman"}, "only the enrolled woman is matched"
    seconds = sorted({int(match["time_s"]) for match in matches})
    assert seconds[0] >= 3 and seconds[-1] < 7 and len(seconds) >= 3, f"matched at {seconds}: she is on screen 3-7 s"
    woman = face_pictures()["woman"]
    for match in matches:
        assert match["similarity"] >= 80 and match["face_id"]
        left = picture_left(woman, match["time_s"], 3, 7) / 480
        centre = match["box"][0] + match["box"][2] / 2
        assert left < centre < left + woman.shape[1] / 480, "the box lies on the panned photo"

    # The same job seen through boto3: every face was searched; the man and the astronaut matched nobody.
    face_job = printed.split("face search started (job ", 1)[1].split(")", 1)[0]
    answer = rekognition.get_face_search(JobId=face_job, SortBy="TIMESTAMP")
    assert answer["JobStatus"] == "SUCCEEDED" and answer["VideoMetadata"]["DurationMillis"] >= 9900
    unmatched = [p["Timestamp"] / 1000 for p in answer["Persons"] if not p["FaceMatches"]]
    assert any(t < 3 for t in unmatched) and any(t >= 7 for t in unmatched), "the other faces were seen and searched"
    assert all(3 <= p["Timestamp"] / 1000 < 7 for p in answer["Persons"] if p["FaceMatches"])
    indexes = {part: {p["Person"]["Index"] for p in answer["Persons"] if start <= p["Timestamp"] / 1000 < end}
               for start, end, part in FACE_CLIP_PARTS}
    assert all(len(found) == 1 for found in indexes.values()), f"each picture is one tracked face: {indexes}"
    assert len(set.union(*indexes.values())) == 3, f"three different faces: {indexes}"

    report = (folder / "report.html").read_text()
    assert "<h2>Watch-list matches</h2>" in report and "Walking Woman" in report
    annotated = folder / f"{clip.stem}-annotated.mp4"
    assert green_box_pixels(annotated, 5.0) > 100, "the woman carries a named box"
    assert green_box_pixels(annotated, 1.0) == 0 and green_box_pixels(annotated, 8.0) == 0


def test_face_search_on_a_missing_collection_is_refused_as_rekognition_does(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path
) -> None:
    from botocore.exceptions import ClientError

    outputs, _ = video_stack
    bucket = outputs["FramesBucketName"]
    boto3.client("s3").put_object(Bucket=bucket, Key="videos/refused.mp4", Body=CLIP.read_bytes()[:100_000])
    rekognition = boto3.client("rekognition")
    with pytest.raises(ClientError) as refused:
        rekognition.start_face_search(Video={"S3Object": {"Bucket": bucket, "Name": "videos/refused.mp4"}},
                                      CollectionId="nobody-enrolled-here")
    assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
    label_job = rekognition.start_label_detection(Video={"S3Object": {"Bucket": bucket, "Name": "videos/refused.mp4"}})
    with pytest.raises(ClientError) as wrong_kind:
        rekognition.get_face_search(JobId=label_job["JobId"])
    assert wrong_kind.value.response["Error"]["Code"] == "ResourceNotFoundException"
    deadline = time.monotonic() + 60  # no job of this test may still run when the next one counts notifications
    while rekognition.get_label_detection(JobId=label_job["JobId"])["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_lost_notifications_of_both_jobs_resume_by_the_label_job_id(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs, server = video_stack
    assert hybridcam_main(["faces", "enroll", "--name", "Walking Woman", str(FACES / "enrol-walking-woman.jpg"),
                           "--stack-name", STACK]) == 0
    clip = tmp_path / "faces-lost.mp4"
    make_face_clip(clip)
    httpx.post(f"{server.url}/_control/video-jobs", json={"drop_notifications": 2}).raise_for_status()
    try:
        code = hybridcam_main(["analyze-video", str(clip), "--output", str(tmp_path), "--stack-name", STACK,
                               "--timeout", "4", "--highlights", "1", "--segment-s", "2"])
        printed = capsys.readouterr().out
        assert code == 3, printed
        job_id = printed.split("--job-id ", 1)[1].split("`", 1)[0]
        resumed = analyse(str(clip), "--job-id", job_id, "--output", str(tmp_path), "--highlights", "1", "--segment-s", "2")
        printed = capsys.readouterr().out
    finally:
        boto3.client("rekognition").delete_collection(CollectionId=outputs["FaceCollectionId"])
    assert resumed == 0, printed
    assert f"face search in {outputs['FaceCollectionId']}: resuming job" in printed
    matches = [json.loads(line) for line in (tmp_path / clip.stem / "faces.jsonl").read_text().splitlines()]
    assert matches and {match["name"] for match in matches} == {"Walking Woman"}


def test_a_container_that_overstates_its_frame_count_is_analysed_as_delivered(
    video_stack: tuple[dict[str, str], LocalModelServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real clip re-muxed into AVI whose header says 42 frames where the file holds 40 (tests/data/video/CREDITS.md)."""
    clip = Path(__file__).parent / "data" / "video" / "arrival-overstated-count.avi"
    code = analyse(str(clip), "--output", str(tmp_path), "--highlights", "1", "--segment-s", "2")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "the container says 42 frames, the file delivers 40" in printed
    folder = tmp_path / clip.stem
    frames = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=nb_read_frames", "-of", "csv=p=0", str(folder / f"{clip.stem}-annotated.mp4")],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert frames == "40"
    assert (folder / "report.html").exists() and (folder / "labels.jsonl").exists()
