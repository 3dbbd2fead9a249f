"""The stored-video analysis as a short pipeline of named steps (see the package's docstring)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud.stored_video.annotated_copy import write_annotated_copy
from cloud.stored_video.face_timeline import FaceTimeline, face_timeline_from_persons, write_face_timeline
from cloud.stored_video.highlights import Segment, choose_segments, motion_per_second, write_reel, write_reel_edl
from cloud.stored_video.rekognition_job import (
    FACES,
    LABELS,
    FaceSearchResults,
    JobChannel,
    JobFailed,
    JobKind,
    JobTimeout,
    LabelResults,
    fetch_face_results,
    fetch_results,
    job_status,
    start_face_search,
    start_label_detection,
    wait_for_completion,
)
from cloud.stored_video.report import ReportFacts, render_report
from cloud.stored_video.settings import VideoAnalysisSettings
from cloud.stored_video.timeline import Timeline, timeline_from_labels, write_timeline
from cloud.stored_video.upload import upload_video
from cloud.stored_video.video_file import VideoInfo

Say = Callable[[str], None]


@dataclass(frozen=True)
class AwsClients:
    s3: Any
    sqs: Any
    rekognition: Any


@dataclass(frozen=True)
class AnalysisOutputs:
    folder: Path
    job_id: str
    timeline: Path
    report: Path
    annotated: Path
    reel: Path
    reel_edl: Path
    segments: list[Segment]
    sightings: int
    face_timeline: Path | None = None
    face_matches: int = 0


@dataclass(frozen=True)
class StartedJobs:
    label_job_id: str
    face_job_id: str | None = None  # None: no face search (no watch-list, or turned off)
    collection_id: str | None = None


def job_file(folder: Path) -> Path:
    return folder / "job.json"


def upload_and_start(clients: AwsClients, video: VideoInfo, bucket: str, channel: JobChannel,
                     settings: VideoAnalysisSettings, folder: Path,
                     progress: Callable[[int], None] | None, collection_id: str | None = None) -> StartedJobs:
    """Upload the video and start label detection, and face search in `collection_id` when one is given."""
    key = upload_video(clients.s3, video.path, bucket, folder / "upload-state.json", progress)
    job_id = start_label_detection(clients.rekognition, bucket, key, channel, settings.min_confidence,
                                   job_tag=video.path.stem)
    face_job_id = None
    if collection_id:
        face_job_id = start_face_search(clients.rekognition, bucket, key, channel, collection_id,
                                        settings.face_match_threshold, job_tag=video.path.stem)
    job_file(folder).write_text(json.dumps({"job_id": job_id, "face_job_id": face_job_id,
                                            "collection_id": collection_id, "bucket": bucket, "key": key,
                                            "video": str(video.path)}))
    return StartedJobs(job_id, face_job_id, collection_id)


def started_jobs(folder: Path, job_id: str) -> StartedJobs:
    """The jobs started with label job `job_id`, as the job file remembers them (a resume by id)."""
    path = job_file(folder)
    if path.exists():
        job = json.loads(path.read_text())
        if job.get("job_id") == job_id:
            return StartedJobs(job_id, job.get("face_job_id"), job.get("collection_id"))
    return StartedJobs(job_id)


def await_job(clients: AwsClients, job_id: str, kind: JobKind, queue_url: str, timeout_s: float,
              tick: Callable[[float], None] | None, resuming: bool = False) -> None:
    """Return once the job has succeeded (waiting for its completion message while it runs); JobFailed if not.

    When resuming, the message may have been lost already, so the job's status is asked now and then too.
    A completion message is only a wake-up call: the status is always Rekognition's own answer, so a
    spoofed notification (anyone who may publish to the topic or send to the queue) can neither fail
    the job, and so delete the upload, nor end the wait early.
    """
    deadline = time.monotonic() + timeout_s
    status, message = job_status(clients.rekognition, job_id, kind)
    while status == "IN_PROGRESS":
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobTimeout(job_id, timeout_s)
        status_check = (lambda: job_status(clients.rekognition, job_id, kind)) if resuming else None
        wait_for_completion(clients.sqs, queue_url, job_id, left, tick, status_check)
        status, message = job_status(clients.rekognition, job_id, kind)
        resuming = True  # a message that lied was used up: from now on ask Rekognition as well
    if status != "SUCCEEDED":
        raise JobFailed(f"Rekognition could not analyse the video: job {job_id} {status.lower()}"
                        f"{': ' + message if message else ''}.")


def await_results(clients: AwsClients, job_id: str, queue_url: str, timeout_s: float,
                  tick: Callable[[float], None] | None, resuming: bool = False) -> LabelResults:
    await_job(clients, job_id, LABELS, queue_url, timeout_s, tick, resuming)
    return fetch_results(clients.rekognition, job_id)


def await_face_results(clients: AwsClients, job_id: str, collection_id: str, queue_url: str, timeout_s: float,
                       tick: Callable[[float], None] | None, resuming: bool = False) -> FaceSearchResults:
    await_job(clients, job_id, FACES, queue_url, timeout_s, tick, resuming)
    return fetch_face_results(clients.rekognition, job_id, collection_id)


SOURCE_MARKER = "source.txt"  # in each analysis folder: the input it belongs to


def output_folder(output_dir: Path, source: Path) -> Path:
    """The analysis folder of one input: ``<stem>``, or ``<stem>-2``, ``-3``... when another input with the same
    file stem owns it (two ``clip.mp4`` from different folders never share, or resume, each other's results)."""
    owner = str(source.resolve())
    number = 1
    while True:
        folder = output_dir / (source.stem if number == 1 else f"{source.stem}-{number}")
        marker = folder / SOURCE_MARKER
        if not marker.exists() or marker.read_text().strip() == owner:  # a folder without a marker predates them
            folder.mkdir(parents=True, exist_ok=True)
            marker.write_text(owner + "\n")
            return folder
        number += 1


def discard_upload(clients: AwsClients, folder: Path) -> None:
    """A failed job's video has no further use: remove it from the bucket."""
    path = job_file(folder)
    if path.exists():
        job = json.loads(path.read_text())
        clients.s3.delete_object(Bucket=job["bucket"], Key=job["key"])
        path.unlink()


def highlight_series(video: VideoInfo, timeline: Timeline, settings: VideoAnalysisSettings) -> np.ndarray:
    if settings.metric == "motion":
        return motion_per_second(video.path, video.duration_s)
    return timeline.per_second(settings.metric, settings.watch_label_set())


def write_outputs(video: VideoInfo, results: LabelResults, settings: VideoAnalysisSettings, folder: Path,
                  cost_usd: float, say: Say, face_results: FaceSearchResults | None = None,
                  face_search_note: str = "") -> AnalysisOutputs:
    timeline = timeline_from_labels(results.labels, video.duration_s)
    tolerance_s = sample_spacing_s(timeline)
    faces: FaceTimeline | None = None
    face_path: Path | None = None
    if face_results is not None:
        faces = face_timeline_from_persons(face_results.persons, face_results.collection_id)
        face_path = folder / "faces.jsonl"
        write_face_timeline(faces, face_path)
        names = ", ".join(f"{person.name} ({person.matches})" for person in faces.people()) or "nobody"
        say(f"watch-list matches: {len(faces.matches)} of {faces.faces_seen} face sightings: {names}")
    paths = {name: folder / file for name, file in (
        ("timeline", "labels.jsonl"), ("report", "report.html"), ("annotated", f"{video.path.stem}-annotated.mp4"),
        ("reel", f"{video.path.stem}-highlights.mp4"), ("reel_edl", "highlights-edl.jsonl"))}
    write_timeline(timeline, paths["timeline"])
    say(f"label timeline: {len(timeline.sightings)} sightings of {len(timeline.labels())} labels")
    segments = choose_segments(highlight_series(video, timeline, settings), settings.highlights,
                               settings.segment_s, video.duration_s)
    reel_s = write_reel(video.path, segments, paths["reel"], settings.fade_s) if segments else 0.0
    write_reel_edl(segments, video.path, settings.metric, paths["reel_edl"], settings.fade_s)
    say(f"highlights: {len(segments)} segments by {settings.metric}, {reel_s:.1f} s")
    delivered = write_annotated_copy(video.path, timeline, paths["annotated"], tolerance_s, faces=faces)
    say(video.count_note(delivered) or "annotated copy written")
    written = {name: path.name for name, path in paths.items() if name != "report"}
    if face_path is not None:
        written["face matches"] = face_path.name
    facts = ReportFacts(video, results.job_id, settings.metric, cost_usd, written, face_search_note)
    paths["report"].write_text(render_report(facts, timeline, segments, tolerance_s, faces))
    return AnalysisOutputs(folder, results.job_id, paths["timeline"], paths["report"], paths["annotated"],
                           paths["reel"], paths["reel_edl"], segments, len(timeline.sightings), face_path,
                           len(faces.matches) if faces else 0)


def sample_spacing_s(timeline: Timeline) -> float:
    """Half the usual gap between analysed moments, so each frame shows the labels of the nearest one."""
    times = sorted(timeline.by_time)
    if len(times) < 2:
        return 1.0
    gaps = [float(gap) for gap in np.diff(times) if gap > 0]
    return max(0.1, sorted(gaps)[len(gaps) // 2] * 0.75) if gaps else 1.0
