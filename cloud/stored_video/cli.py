"""Analyse a stored video (a file, or a program recording) with Rekognition Video after the event.

  hybridcam analyze-video match.mp4              upload, analyse, write timeline, report, annotated copy, highlights
  hybridcam analyze-video --recording last       the newest program recording of this site
  hybridcam analyze-video match.mp4 --job-id ID  resume: fetch the results of a job already started

Writes into OUTPUT/<name>/: labels.jsonl (label, confidence, time, boxes), report.html (self-contained),
<name>-annotated.mp4, <name>-highlights.mp4 and highlights-edl.jsonl (where each piece came from).
When the face watch-list collection (HYBRIDCAM_CLOUD_FACE_COLLECTION or the stack's FaceCollectionId) holds
faces, Rekognition Video's face search runs too: faces.jsonl (time, name, face id, similarity, box), a
"watch-list matches" section in the report and named boxes in the annotated copy (--no-face-search skips it).
The stack's bucket, video-jobs topic, queue and role come from its outputs (`hybridcam cloud deploy`);
settings: HYBRIDCAM_VIDEO_* (see cloud/stored_video/settings.py). An interrupted upload resumes when the
same command runs again; a job whose completion message never came is resumed with --job-id.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from shared.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from cloud.stored_video.analysis import AwsClients, StartedJobs
    from cloud.stored_video.rekognition_job import FaceSearchResults, JobChannel, LabelResults
    from cloud.stored_video.settings import VideoAnalysisSettings
    from cloud.stored_video.video_file import VideoInfo

EXIT_REJECTED = 2
EXIT_JOB_FAILED = 1
EXIT_TIMEOUT = 3
OUTPUT_NAMES = {"bucket": "FramesBucketName", "topic_arn": "VideoJobsTopicArn", "role_arn": "VideoJobsRoleArn",
                "queue_url": "VideoJobsQueueUrl"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="the video file (H.264 in MP4/MOV/AVI)")
    source.add_argument("--recording", metavar="last|NAME", help="a program recording (see HYBRIDCAM_VIDEO_RECORDINGS_DIR)")
    parser.add_argument("--job-id", help="resume: the id of a job already started for this video")
    parser.add_argument("--output", type=Path, help="output folder (default HYBRIDCAM_VIDEO_OUTPUT_DIR, runs/video-analysis)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the completion message (default 3600)")
    parser.add_argument("--highlights", type=int, help="segments in the highlights reel (default 5)")
    parser.add_argument("--segment-s", type=float, help="length of a highlight segment in seconds (default 6)")
    parser.add_argument("--metric", choices=["people", "watch", "motion"], help="what makes a stretch interesting")
    parser.add_argument("--min-confidence", type=float, help="lowest label confidence kept, 0-100 (default 50)")
    parser.add_argument("--stack-name", help="CloudFormation stack (default HYBRIDCAM_CLOUD_STACK_NAME or hybridcam)")
    parser.add_argument("--region", help="AWS region (default HYBRIDCAM_CLOUD_REGION or the SDK's)")
    parser.add_argument("--no-face-search", dest="face_search", action="store_false", default=None,
                        help="skip the watch-list face search (default: on when the watch-list collection has faces)")


def run(args: argparse.Namespace) -> int:
    import boto3
    from rich.console import Console

    from cloud.settings import load_cloud_settings
    from cloud.stored_video.analysis import AwsClients
    from cloud.stored_video.settings import load_video_settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(highlight=False, soft_wrap=True, markup=False)  # file names and AWS messages are text, not markup
    settings = load_video_settings(output_dir=args.output, timeout_s=args.timeout, highlights=args.highlights,
                                   segment_s=args.segment_s, metric=args.metric, min_confidence=args.min_confidence,
                                   face_search=args.face_search)
    cloud = load_cloud_settings()
    region = args.region or cloud.region
    session = boto3.session.Session(region_name=region)
    clients = AwsClients(session.client("s3"), session.client("sqs"), session.client("rekognition"))
    try:
        return _analyse(args, settings, clients, args.stack_name or cloud.stack_name, region, console)
    except NoCredentialsError:
        raise ConfigError("no AWS credentials found: configure a profile, or set AWS_ENDPOINT_URL and keys for moto.") from None
    except (BotoCoreError, ClientError) as error:
        console.print(f"hybridcam analyze-video: AWS refused or could not be reached: {error}")
        return EXIT_JOB_FAILED


def _analyse(args: argparse.Namespace, settings: VideoAnalysisSettings, clients: AwsClients, stack: str,
             region: str | None, console: Console) -> int:
    from cloud.stored_video.analysis import discard_upload, job_file, output_folder, started_jobs, write_outputs
    from cloud.stored_video.rekognition_job import JobChannel, JobFailed, JobTimeout
    from cloud.stored_video.video_file import VideoRejected, check_rekognition_limits, probe_video

    try:
        path = _source_file(args, settings)
        video = probe_video(path)
        check_rekognition_limits(video)
    except (VideoRejected, FileNotFoundError) as error:
        console.print(f"hybridcam analyze-video: {error}")
        return EXIT_REJECTED
    folder = output_folder(settings.output_dir, video.path)
    resources = _stack_resources(settings, stack, region)
    channel = JobChannel(resources["topic_arn"], resources["role_arn"], resources["queue_url"])
    jobs: StartedJobs
    if args.job_id is None:
        collection, face_note = _watch_list(clients, settings, stack, region)
        console.print(face_note)
        _print_cost(console, video, settings, with_faces=collection is not None)
        jobs = _upload_and_start(clients, video, resources["bucket"], channel, settings, folder, console, collection)
    else:
        jobs = started_jobs(folder, args.job_id)
        face_note = (f"face search in {jobs.collection_id}: resuming job {jobs.face_job_id}" if jobs.face_job_id
                     else "face search: no face-search job is known for this label job; resuming labels only")
        console.print(face_note)
        _print_cost(console, video, settings, with_faces=jobs.face_job_id is not None)
    console.print(f"job {jobs.label_job_id}: waiting for Rekognition's completion message (timeout {settings.timeout_s:.0f} s)")
    try:
        results = _await(clients, jobs.label_job_id, channel.queue_url, settings.timeout_s, console,
                         resuming=args.job_id is not None)
        face_results, face_note = _await_faces(clients, jobs, channel.queue_url, settings.timeout_s, console,
                                               args.job_id is not None, face_note)
    except JobTimeout:
        resume = f"hybridcam analyze-video {video.path} --job-id {jobs.label_job_id}"
        console.print(f"hybridcam analyze-video: no completion message came within {settings.timeout_s:.0f} s; "
                      f"the job goes on in the cloud: resume with `{resume}`.")
        return EXIT_TIMEOUT
    except JobFailed as error:
        discard_upload(clients, folder)
        console.print(f"hybridcam analyze-video: {error}")
        return EXIT_JOB_FAILED
    console.print(f"{len(results.labels)} label sightings fetched")
    outputs = write_outputs(video, results, settings, folder, _job_cost(settings.price_set, video.minutes,
                                                                        face_results is not None),
                            console.print, face_results, face_note)
    job_file(folder).unlink(missing_ok=True)
    reel = f"highlights {outputs.reel}" if outputs.segments else "no highlights (nothing scored above zero)"
    faces = f", watch-list matches {outputs.face_timeline}" if outputs.face_timeline else ""
    from rich.text import Text

    console.print(Text.assemble(("done", "bold green"), f": report {outputs.report}, {reel}, annotated {outputs.annotated}, "
                                                        f"timeline {outputs.timeline}{faces}"))
    return 0


def _watch_list(clients: AwsClients, settings: VideoAnalysisSettings, stack: str,
                region: str | None) -> tuple[str | None, str]:
    """(the collection to search, or None; one sentence saying which, or why face search is skipped)."""
    if not settings.face_search:
        return None, "face search: off (--no-face-search or HYBRIDCAM_VIDEO_FACE_SEARCH=false)"
    from cloud.settings import load_cloud_settings

    collection = load_cloud_settings().face_collection or _stack_output(stack, region, "FaceCollectionId")
    if not collection:
        return None, "face search skipped: no watch-list collection (the stack has no FaceCollectionId output)"
    try:
        faces = int(clients.rekognition.describe_collection(CollectionId=collection).get("FaceCount", 0))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None, f"face search skipped: the watch-list collection {collection} does not exist"
        raise
    if faces == 0:
        return None, f"face search skipped: nobody is enrolled in the watch-list collection {collection}"
    return collection, f"face search: {faces} enrolled face(s) in {collection}"


def _stack_output(stack: str, region: str | None, name: str) -> str | None:
    from cloud.deploy import DeployError, stack_outputs

    try:
        return stack_outputs(stack, region).get(name)
    except DeployError:
        return None


def _await_faces(clients: AwsClients, jobs: StartedJobs, queue_url: str, timeout_s: float, console: Console,
                 resuming: bool, note: str) -> tuple[FaceSearchResults | None, str]:
    """The face-search results, or None with the reason; a failed face search leaves the label results standing."""
    from cloud.stored_video.analysis import await_face_results
    from cloud.stored_video.rekognition_job import JobFailed

    if jobs.face_job_id is None or jobs.collection_id is None:
        return None, note
    console.print(f"face search job {jobs.face_job_id}: waiting for its completion message")
    try:
        with console.status("waiting for the face search") as status:
            results = await_face_results(clients, jobs.face_job_id, jobs.collection_id, queue_url, timeout_s,
                                         lambda waited: status.update(f"waiting for the face search: {waited:.0f} s"),
                                         resuming)
    except JobFailed as error:
        console.print(f"face search failed, the label results stand: {error}")
        return None, f"Face search failed: {error}"
    console.print(f"{len(results.persons)} face sightings fetched")
    return results, note


def _print_cost(console: Console, video: VideoInfo, settings: VideoAnalysisSettings, with_faces: bool) -> None:
    labels = _job_cost(settings.price_set, video.minutes)
    from rich.text import Text

    line = (f": {video.duration_s:.1f} s, {video.width}x{video.height}, "
            f"{video.size_bytes / 1e6:.1f} MB; label detection costs about {labels:.2f} USD")
    if with_faces:
        faces = _job_cost(settings.price_set, video.minutes, True) - labels
        line += f", face search about {faces:.2f} USD"
    console.print(Text.assemble((video.path.name, "bold"), line))  # the name as text: "[/x]" in it is no markup


def _source_file(args: argparse.Namespace, settings: VideoAnalysisSettings) -> Path:
    if args.file is not None:
        return Path(args.file)
    from cloud.stored_video.recordings import join_segments, resolve_recording

    segments = resolve_recording(settings.recordings_dir, args.recording)
    name = segments[0].name.rsplit("-", 1)[0]
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    return join_segments(segments, settings.output_dir / f"{name}.mp4")


def _stack_resources(settings: VideoAnalysisSettings, stack: str, region: str | None) -> dict[str, str]:
    resources = {name: getattr(settings, name) for name in OUTPUT_NAMES}
    if all(resources.values()):
        return resources
    from cloud.deploy import DeployError, stack_outputs

    try:
        outputs = stack_outputs(stack, region)
    except DeployError as error:
        raise ConfigError(f"the stack {stack!r} could not be read ({error}); deploy it with `hybridcam cloud deploy`.") from None
    for name, output in OUTPUT_NAMES.items():
        if not resources[name]:
            if output not in outputs:
                raise ConfigError(f"the stack {stack!r} has no {output} output: update it with `hybridcam cloud deploy`.")
            resources[name] = outputs[output]
    return resources


def _job_cost(price_set: str, minutes: float, with_faces: bool = False) -> float:
    """What the jobs cost: label detection, plus face search when it runs (both billed per minute of video)."""
    from cost_model.price_sets import load_price_set

    prices = load_price_set(price_set)
    names = ["rekognition.stored_video_labels_minute"]
    if with_faces:
        names.append("rekognition.stored_video_face_search_minute")
    return sum(item.cost(minutes) for name in names if (item := prices.get(name)) is not None)


def _upload_and_start(clients: AwsClients, video: VideoInfo, bucket: str, channel: JobChannel,
                      settings: VideoAnalysisSettings, folder: Path, console: Console,
                      collection: str | None) -> StartedJobs:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from cloud.stored_video.analysis import upload_and_start

    with Progress("uploading", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("upload", total=video.size_bytes)
        jobs = upload_and_start(clients, video, bucket, channel, settings, folder,
                                lambda sent: progress.advance(task, sent), collection)
    faces = f", face search started (job {jobs.face_job_id})" if jobs.face_job_id else ""
    console.print(f"uploaded to s3://{bucket}; label detection started (job {jobs.label_job_id}){faces}")
    return jobs


def _await(clients: AwsClients, job_id: str, queue_url: str, timeout_s: float, console: Console,
           resuming: bool) -> LabelResults:
    from cloud.stored_video.analysis import await_results

    with console.status("waiting for the job") as status:
        return await_results(clients, job_id, queue_url, timeout_s,
                             lambda waited: status.update(f"waiting for the job: {waited:.0f} s"), resuming)


