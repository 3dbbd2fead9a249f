"""Rekognition Video jobs (label detection, face search): start one, wait for its completion message, fetch every page.

Completion arrives as Rekognition's notification (JobId, Status, API, JobTag, Timestamp, Video) published to
the stack's video-jobs SNS topic and delivered, wrapped in SNS's envelope, to the SQS queue subscribed to it.
Messages of other jobs on the same queue are handed back for whoever waits for them, visible again after a few
seconds: handed back at once, the same message would come straight back and the wait would spin on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

LABEL_DETECTION_API = "StartLabelDetection"
FACE_SEARCH_API = "StartFaceSearch"
FINISHED_STATES = ("SUCCEEDED", "FAILED", "ERROR")
PAGE_SIZE = 1000
HAND_BACK_S = 3  # another job's message is visible again after this long


class JobFailed(RuntimeError):
    """Rekognition says the job failed; the message says why."""


class JobTimeout(TimeoutError):
    """No completion message came in time; the job can be resumed by its id."""

    def __init__(self, job_id: str, waited_s: float) -> None:
        super().__init__(f"no completion message for job {job_id} after {waited_s:.0f} s")
        self.job_id = job_id


@dataclass(frozen=True)
class JobChannel:
    topic_arn: str
    role_arn: str
    queue_url: str


@dataclass(frozen=True)
class JobKind:
    """How a kind of job is read back: the Get operation (boto3 method name) and the key of its result list."""

    get_method: str
    results_key: str


LABELS = JobKind("get_label_detection", "Labels")
FACES = JobKind("get_face_search", "Persons")


@dataclass(frozen=True)
class LabelResults:
    job_id: str
    video_metadata: dict[str, Any]
    labels: list[dict[str, Any]]  # Rekognition's LabelDetection items: {"Timestamp": ms, "Label": {...}}


def start_label_detection(rekognition: Any, bucket: str, key: str, channel: JobChannel, min_confidence: float,
                          job_tag: str) -> str:
    response = rekognition.start_label_detection(
        Video={"S3Object": {"Bucket": bucket, "Name": key}},
        MinConfidence=min_confidence,
        NotificationChannel={"SNSTopicArn": channel.topic_arn, "RoleArn": channel.role_arn},
        JobTag=job_tag[:256],
    )
    return str(response["JobId"])


@dataclass(frozen=True)
class FaceSearchResults:
    job_id: str
    collection_id: str
    persons: list[dict[str, Any]]  # Rekognition's PersonMatch items: {"Timestamp": ms, "Person": {...}, "FaceMatches": [...]}


def start_face_search(rekognition: Any, bucket: str, key: str, channel: JobChannel, collection_id: str,
                      threshold: float, job_tag: str) -> str:
    response = rekognition.start_face_search(
        Video={"S3Object": {"Bucket": bucket, "Name": key}},
        CollectionId=collection_id,
        FaceMatchThreshold=threshold,
        NotificationChannel={"SNSTopicArn": channel.topic_arn, "RoleArn": channel.role_arn},
        JobTag=job_tag[:256],
    )
    return str(response["JobId"])


def job_status(rekognition: Any, job_id: str, kind: JobKind = LABELS) -> tuple[str, str]:
    """(JobStatus, StatusMessage) as the job's Get operation reports them now."""
    page = getattr(rekognition, kind.get_method)(JobId=job_id, MaxResults=1)
    return str(page["JobStatus"]), str(page.get("StatusMessage", ""))


def completion_of(body: str) -> dict[str, Any] | None:
    """The Rekognition notification inside an SQS body (SNS envelope or raw delivery), or None."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and "Message" in message and "JobId" not in message:
            message = json.loads(message["Message"])
    except (ValueError, TypeError):
        return None
    return message if isinstance(message, dict) and "JobId" in message else None


def wait_for_completion(sqs: Any, queue_url: str, job_id: str, timeout_s: float,
                        tick: Callable[[float], None] | None = None,
                        status_check: Callable[[], tuple[str, str]] | None = None,
                        status_every_s: float = 10.0) -> dict[str, Any]:
    """Block until the job's completion message arrives (deleting it), or raise JobTimeout.

    With `status_check` (used when resuming, where the message may already be lost), the job's status is
    also asked every `status_every_s`, and a finished job ends the wait without its message.
    """
    started = time.monotonic()
    next_check = started + status_every_s
    while (waited := time.monotonic() - started) < timeout_s:
        if tick:
            tick(waited)
        if status_check is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + status_every_s
            status, message = status_check()
            if status in FINISHED_STATES:
                return {"JobId": job_id, "Status": status, "Message": message}
        wait_s = int(max(1, min(20 if status_check is None else status_every_s, timeout_s - waited)))
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
        for message in answer.get("Messages", []):
            notification = completion_of(message["Body"])
            if notification is not None and notification["JobId"] == job_id:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                return notification
            if notification is None:  # not a job notification at all: it can never be claimed
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=HAND_BACK_S)
        if not answer.get("Messages"):
            time.sleep(0.2)
    raise JobTimeout(job_id, timeout_s)


def result_pages(rekognition: Any, job_id: str, kind: JobKind = LABELS) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        request: dict[str, Any] = {"JobId": job_id, "MaxResults": PAGE_SIZE, "SortBy": "TIMESTAMP"}
        if token:
            request["NextToken"] = token
        page = getattr(rekognition, kind.get_method)(**request)
        yield page
        token = page.get("NextToken")
        if not token:
            return


def fetch_items(rekognition: Any, job_id: str, kind: JobKind) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(VideoMetadata, every item of every page) of a finished job."""
    items: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {}
    for page in result_pages(rekognition, job_id, kind):
        status = page.get("JobStatus")
        if status != "SUCCEEDED":
            raise JobFailed(f"job {job_id} is {status}: {page.get('StatusMessage') or 'no reason given'}")
        metadata = page.get("VideoMetadata") or metadata
        items.extend(page.get(kind.results_key, []))
    return metadata, items


def fetch_results(rekognition: Any, job_id: str) -> LabelResults:
    metadata, labels = fetch_items(rekognition, job_id, LABELS)
    return LabelResults(job_id, metadata, labels)


def fetch_face_results(rekognition: Any, job_id: str, collection_id: str) -> FaceSearchResults:
    _, persons = fetch_items(rekognition, job_id, FACES)
    return FaceSearchResults(job_id, collection_id, persons)
