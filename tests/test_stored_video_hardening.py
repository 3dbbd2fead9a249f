"""Stored-video analysis under hostile or unlucky input (security review, finding 10): a network drop keeps
a multipart upload resumable, two inputs with one file stem get folders of their own, a forged completion
notification neither fails the job nor ends the wait, a file name with rich markup is printed as text, and
a video under 0.5 fps is cut and annotated without dividing by zero."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from cloud.stored_video.analysis import AwsClients, await_job
from cloud.stored_video.annotated_copy import write_annotated_copy
from cloud.stored_video.highlights import Segment, write_reel
from cloud.stored_video.rekognition_job import LABELS
from cloud.stored_video.timeline import Timeline
from cloud.stored_video.upload import PART_BYTES, upload_video
from hybridcam.cli import main as hybridcam_main


class DroppingS3:
    """The real (moto) S3 client whose connection drops once, on the given part."""

    def __init__(self, drop_on_part: int | None = None) -> None:
        self.client = boto3.client("s3")
        self.parts_sent: list[int] = []
        self.drop_on_part = drop_on_part

    def upload_part(self, **request: Any) -> Any:
        if request["PartNumber"] == self.drop_on_part:
            raise EndpointConnectionError(endpoint_url="https://s3.example")
        self.parts_sent.append(request["PartNumber"])
        return self.client.upload_part(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_network_drop_keeps_the_upload_resumable(aws_env: dict[str, str], tmp_path: Path) -> None:
    bucket = f"videos-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(2).bytes(2 * PART_BYTES + 1000))  # three parts
    state = tmp_path / "upload-state.json"
    dropping = DroppingS3(drop_on_part=2)
    with pytest.raises(EndpointConnectionError):
        upload_video(dropping, big, bucket, state)
    assert dropping.parts_sent == [1] and state.exists(), "a network drop discarded the upload"
    assert len(boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    resumed = DroppingS3()
    key = upload_video(resumed, big, bucket, state)
    assert resumed.parts_sent == [2, 3]
    assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == big.read_bytes()


def test_two_inputs_with_one_stem_get_folders_of_their_own(tmp_path: Path) -> None:
    from cloud.stored_video.analysis import output_folder

    first, second = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"x")
    out = tmp_path / "out"
    folder_a, folder_b = output_folder(out, first), output_folder(out, second)
    assert folder_a != folder_b and (folder_a.name, folder_b.name) == ("clip", "clip-2")
    assert output_folder(out, first) == folder_a and output_folder(out, second) == folder_b  # reruns resume their own


def test_a_forged_completion_neither_fails_the_job_nor_ends_the_wait(aws_env: dict[str, str]) -> None:
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"video-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    forged = {"JobId": "job-1", "Status": "FAILED", "Message": "forged"}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Type": "Notification", "Message": json.dumps(forged)}))
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    stubber = Stubber(rekognition)
    answers = iter(["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"])  # Rekognition's own word, asked each time

    for status in answers:
        stubber.add_response("get_label_detection", {"JobStatus": status})

    def genuine_completion_arrives(_: float) -> None:
        if not sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0).get("Messages"):
            genuine = {"JobId": "job-1", "Status": "SUCCEEDED"}
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(genuine))

    with stubber:
        await_job(AwsClients(boto3.client("s3"), sqs, rekognition), "job-1", LABELS, queue, 60, genuine_completion_arrives)
        stubber.assert_no_pending_responses()


def test_a_file_name_with_rich_markup_is_printed_as_text(
        aws_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = tmp_path / "[bold red]clip[x].mp4"  # a name cannot hold "/", so "[/x]" would need a folder: tags show too
    hostile.write_text("not a video")
    code = hybridcam_main(["analyze-video", str(hostile), "--output", str(tmp_path / "out"), "--stack-name", "none"])
    printed = capsys.readouterr().out
    assert code == 2 and "[bold red]clip[x].mp4 is not a video" in printed, printed


def test_a_video_under_half_a_frame_a_second_is_cut_and_annotated(tmp_path: Path) -> None:
    slow = tmp_path / "slow.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=0.4", "-t", "20",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(slow)], check=True)
    with av.open(str(slow)) as container:
        assert float(container.streams.video[0].average_rate) < 0.5
    reel_s = write_reel(slow, [Segment(0.0, 10.0, 1.0)], tmp_path / "reel.mp4")
    assert reel_s > 0 and (tmp_path / "reel.mp4").stat().st_size > 0
    written = write_annotated_copy(slow, Timeline([], 20.0), tmp_path / "annotated.mp4", tolerance_s=1.0)
    assert written > 0


def test_only_rekognition_may_publish_to_the_video_jobs_topic() -> None:
    from tests.test_cloud_edge_identity import as_text, template

    resources = template()["Resources"]
    policy = resources["VideoJobsTopicPolicy"]["Properties"]
    assert [as_text(t) for t in policy["Topics"]] == ["Ref VideoJobsTopic"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "sns:Publish")
    assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["VideoJobsRole", "Arn"]}}}
