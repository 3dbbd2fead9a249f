"""Rekognition Video's stored-video jobs, answered locally: label detection (StartLabelDetection,
GetLabelDetection) and face search (StartFaceSearch, GetFaceSearch).

A job reads the video from S3 (moto, through boto3) and looks at one frame every `sample_every_s`: a label job
runs the same cloud-tier detector as DetectLabels; a face-search job finds every face with the local face
models and searches each in the job's collection with the same descriptor, similarity and threshold as the
local SearchFacesByImage (cloud/local/face_collections.py). Its Persons list every face seen, with their
FaceMatches (empty when nobody on the watch-list resembles it); Person.Index follows a face from one sample
to the next (the nearest
face of the previous sample within 2.5 face widths that still looks like it). When a job is done it publishes Rekognition's completion notification (JobId,
Status, API, JobTag, Timestamp, Video) to the job's NotificationChannel SNS topic, so the real SNS -> SQS
subscription path carries it. The checks Rekognition makes are made here too: an S3 object that cannot be read
or is over 10 GB is refused at start; a video that is not H.264 in MP4/MOV/AVI, or over 6 hours, fails the job.

Test switches (POST /_control/video-jobs): {"fail_next": N} fails the next N jobs as Rekognition does on an
internal error; {"drop_notifications": N} finishes the next N jobs without publishing their notification.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from cloud.local.model_server import LocalModels

log = logging.getLogger("hybridcam.cloud.video_jobs")

LABEL_DETECTION = "StartLabelDetection"
FACE_SEARCH = "StartFaceSearch"
START_TARGETS = {f"RekognitionService.{api}": api for api in (LABEL_DETECTION, FACE_SEARCH)}
GET_TARGETS = {"RekognitionService.GetLabelDetection": LABEL_DETECTION, "RekognitionService.GetFaceSearch": FACE_SEARCH}
RESULT_KEYS = {LABEL_DETECTION: "Labels", FACE_SEARCH: "Persons"}
# A face is the same Person.Index as a face of the previous sample (one sample period earlier) when its
# centre lies within this many face widths of it (people walk: a face moves more than its own width in a
# second) and it still looks like it (descriptor similarity; consecutive samples of one face score 94-99 on
# the test clip, two different faces at most 56).
SAME_PERSON_WIDTHS = 2.5
SAME_PERSON_SIMILARITY = 70.0
MAX_VIDEO_BYTES = 10 * 1024**3
MAX_VIDEO_S = 6 * 3600.0
ACCEPTED_CODECS = ("h264",)
ACCEPTED_CONTAINERS = ("mp4", "mov", "avi")
MAX_RESULTS = 1000
UNSUPPORTED_MESSAGE = "Unsupported codec/format."


class VideoJobError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class VideoJob:
    job_id: str
    bucket: str
    key: str
    topic_arn: str | None
    job_tag: str
    min_confidence: float
    api: str = LABEL_DETECTION
    collection_id: str = ""
    status: str = "IN_PROGRESS"
    status_message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)  # Labels or Persons, by time
    last_faces: list[tuple[int, dict[str, float], Any]] = field(default_factory=list)  # (Person.Index, box, descriptor) just seen
    persons_seen: int = 0


class VideoJobs:
    def __init__(self, models: LocalModels, sample_every_s: float = 1.0) -> None:
        self.models = models
        self.sample_every_s = sample_every_s
        self._jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        self._fail_next = 0
        self._drop_notifications = 0

    def control(self, request: dict[str, Any]) -> dict[str, int]:
        with self._lock:
            self._fail_next = int(request.get("fail_next", self._fail_next))
            self._drop_notifications = int(request.get("drop_notifications", self._drop_notifications))
            return {"fail_next": self._fail_next, "drop_notifications": self._drop_notifications}

    def start(self, request: dict[str, Any], api: str = LABEL_DETECTION) -> dict[str, str]:
        try:
            s3_object = request["Video"]["S3Object"]
            bucket, key = str(s3_object["Bucket"]), str(s3_object["Name"])
        except (KeyError, TypeError):
            raise VideoJobError("InvalidParameterException", "Video.S3Object with Bucket and Name is required") from None
        size = self._object_size(bucket, key)
        if size > MAX_VIDEO_BYTES:
            raise VideoJobError("VideoTooLargeException", "The file size or duration of the supplied media is too large.")
        channel = request.get("NotificationChannel") or {}
        collection_id = ""
        if api == FACE_SEARCH:
            collection_id = str(request.get("CollectionId") or "")
            if not self.models.faces.has_collection(collection_id):
                raise VideoJobError("ResourceNotFoundException", f"The collection id: {collection_id} does not exist")
        threshold_key = "FaceMatchThreshold" if api == FACE_SEARCH else "MinConfidence"
        job = VideoJob(uuid.uuid4().hex, bucket, key, channel.get("SNSTopicArn"), str(request.get("JobTag", "")),
                       float(request.get(threshold_key, 80.0 if api == FACE_SEARCH else 50.0)), api, collection_id)
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"video-job-{job.job_id[:8]}", daemon=True).start()
        return {"JobId": job.job_id}

    def get(self, request: dict[str, Any], api: str = LABEL_DETECTION) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(str(request.get("JobId", "")))
        if job is None or job.api != api:
            raise VideoJobError("ResourceNotFoundException", "The specified resource does not exist.")
        answer: dict[str, Any] = {"JobStatus": job.status}
        if api == LABEL_DETECTION:
            answer["LabelModelVersion"] = "hybridcam-local-1.0"
        else:
            answer.update({"JobId": job.job_id, "JobTag": job.job_tag,
                           "Video": {"S3Object": {"Bucket": job.bucket, "Name": job.key}}})
        if job.status_message:
            answer["StatusMessage"] = job.status_message
        if job.status != "SUCCEEDED":
            return answer
        size = max(1, min(MAX_RESULTS, int(request.get("MaxResults") or MAX_RESULTS)))
        start = int(request.get("NextToken") or 0)
        answer["VideoMetadata"] = job.metadata
        answer[RESULT_KEYS[api]] = job.results[start:start + size]
        if start + size < len(job.results):
            answer["NextToken"] = str(start + size)
        return answer

    def _object_size(self, bucket: str, key: str) -> int:
        try:
            return int(boto3.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as error:
            raise VideoJobError("InvalidS3ObjectException", f"Unable to get object metadata from S3: {error}") from None

    def _run(self, job: VideoJob) -> None:
        try:
            with self._lock:
                failing = self._fail_next > 0
                self._fail_next -= int(failing)
            if failing:
                raise VideoJobError("InternalServerError", "Internal server error.")
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / Path(job.key).name
                boto3.client("s3").download_file(job.bucket, job.key, str(path))
                self._analyse(job, path)
            job.status = "SUCCEEDED"
        except VideoJobError as error:
            job.status, job.status_message = "FAILED", str(error)
        except Exception as error:  # a job never takes the server down; it fails as Rekognition's would
            log.exception("video job %s failed", job.job_id)
            job.status, job.status_message = "FAILED", f"{type(error).__name__}: {error}"
        self._notify(job)

    def _analyse(self, job: VideoJob, path: Path) -> None:
        try:
            container = av.open(str(path))
        except av.error.FFmpegError:
            raise VideoJobError("InvalidVideo", UNSUPPORTED_MESSAGE) from None
        with container:
            if not container.streams.video:
                raise VideoJobError("InvalidVideo", UNSUPPORTED_MESSAGE)
            stream = container.streams.video[0]
            codec, formats = stream.codec_context.name, container.format.name.split(",")
            if codec not in ACCEPTED_CODECS or not any(name in formats for name in ACCEPTED_CONTAINERS):
                raise VideoJobError("InvalidVideo", UNSUPPORTED_MESSAGE)
            duration_s = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            if duration_s > MAX_VIDEO_S:
                raise VideoJobError("VideoTooLarge", "The file size or duration of the supplied media is too large.")
            job.metadata = {
                "Codec": codec, "DurationMillis": int(duration_s * 1000), "Format": "QuickTime / MOV",
                "FrameRate": float(stream.average_rate or 0), "FrameHeight": stream.codec_context.height,
                "FrameWidth": stream.codec_context.width, "ColorRange": "LIMITED",
            }
            next_sample = 0.0
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-6 < next_sample:
                    continue
                next_sample = frame.time + self.sample_every_s
                picture = frame.to_ndarray(format="bgr24")
                if job.api == FACE_SEARCH:
                    job.results.extend(self._persons_at(job, picture, frame.time))
                else:
                    job.results.extend(self._labels_at(picture, frame.time, job.min_confidence))

    def _labels_at(self, picture: Any, time_s: float, min_confidence: float) -> list[dict[str, Any]]:
        from cloud.local.model_server import rekognition_labels

        detections = self.models.detect_picture(picture)
        height, width = picture.shape[:2]
        return [{"Timestamp": int(round(time_s * 1000)), "Label": label}
                for label in rekognition_labels(detections, width, height, 1000, min_confidence)]

    def _persons_at(self, job: VideoJob, picture: Any, time_s: float) -> list[dict[str, Any]]:
        """One PersonMatch per face in the frame, as GetFaceSearch lists them."""
        found = self.models.faces.search_every_face(job.collection_id, picture, job.min_confidence)
        persons, seen_now = [], []
        for detail, matches, descriptor in found:
            index = self._person_index(job, detail["BoundingBox"], descriptor)
            seen_now.append((index, detail["BoundingBox"], descriptor))
            persons.append({"Timestamp": int(round(time_s * 1000)),
                            "Person": {"Index": index, "BoundingBox": detail["BoundingBox"], "Face": detail},
                            "FaceMatches": matches})
        job.last_faces = seen_now
        return persons

    @staticmethod
    def _person_index(job: VideoJob, box: dict[str, float], descriptor: Any) -> int:
        from cloud.local.face_models import similarity

        same = [seen for seen in job.last_faces
                if centre_distance(seen[1], box) <= SAME_PERSON_WIDTHS * max(box["Width"], seen[1]["Width"])
                and similarity(seen[2], descriptor) >= SAME_PERSON_SIMILARITY]
        if same:
            return min(same, key=lambda seen: centre_distance(seen[1], box))[0]
        job.persons_seen += 1
        return job.persons_seen - 1

    def _notify(self, job: VideoJob) -> None:
        with self._lock:
            dropping = self._drop_notifications > 0
            self._drop_notifications -= int(dropping)
        if job.topic_arn is None or dropping:
            return
        payload = {"JobId": job.job_id, "Status": job.status, "API": job.api, "JobTag": job.job_tag,
                   "Message": job.status_message, "Timestamp": int(time.time() * 1000),
                   "Video": {"S3ObjectName": job.key, "S3Bucket": job.bucket}}
        try:
            boto3.client("sns").publish(TopicArn=job.topic_arn, Message=json.dumps(payload))
        except ClientError:
            log.exception("could not publish the completion of video job %s", job.job_id)


def centre_distance(first: dict[str, float], second: dict[str, float]) -> float:
    """Distance between the centres of two Rekognition boxes (Left, Top, Width, Height as fractions)."""
    dx = (first["Left"] + first["Width"] / 2) - (second["Left"] + second["Width"] / 2)
    dy = (first["Top"] + first["Height"] / 2) - (second["Top"] + second["Height"] / 2)
    return float((dx * dx + dy * dy) ** 0.5)
