"""Upload of the program recordings (MP4 segments) to the stack's bucket, under ``recordings/<site>/``, after a run.

Runs once the program has stopped, never on the program's path: the compositor at its end
(HYBRIDCAM_COMPOSITOR_UPLOAD_RECORDINGS), `hybridcam recordings upload`, or `hybridcam demo --upload-recordings`.
Idempotent and resumable: a segment whose object already holds the same number of bytes is skipped, so a run
that was cut short sends only what is missing the next time. Segments over 8 MiB go as multipart uploads
(boto3's managed transfer). When the bucket cannot be reached, the upload stops with one sentence and the
segments stay where they are; the bucket's lifecycle rule expires uploaded recordings after
`VideoRetentionDays`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.s3_objects import object_size

KEY_PREFIX = "recordings/"
SEGMENT_PATTERN = "program-*.mp4"
# An unreachable endpoint should be said within seconds, not after botocore's default retries and timeouts.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"total_max_attempts": 2, "mode": "standard"})

Say = Callable[[str], None]


@dataclass
class UploadSummary:
    uploaded: int = 0
    skipped: int = 0  # already in the bucket with the same size
    bytes_sent: int = 0
    failure: str = ""  # one sentence when the upload stopped early

    @property
    def ok(self) -> bool:
        return not self.failure


def recording_key(prefix: str, site: str, segment: Path) -> str:
    return f"{prefix.rstrip('/')}/{site}/{segment.name}" if prefix.strip("/") else f"{site}/{segment.name}"


def s3_client(region: str | None = None) -> Any:
    import boto3

    return boto3.session.Session(region_name=region).client("s3", config=CLIENT_CONFIG)


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error).split("\n", 1)[0]


def upload_recordings(s3: Any, folder: Path, bucket: str, site: str, say: Say, prefix: str = KEY_PREFIX) -> UploadSummary:
    """Upload every finished segment in `folder` that the bucket does not hold yet; say what happens."""
    summary = UploadSummary()
    segments = sorted(folder.glob(SEGMENT_PATTERN)) if folder.is_dir() else []
    if not segments:
        say(f"recordings: nothing to upload in {folder}")
        return summary
    total = sum(path.stat().st_size for path in segments)
    say(f"recordings: {len(segments)} segment(s), {total / 1e6:.1f} MB, to s3://{bucket}/{recording_key(prefix, site, Path(''))}")
    for number, path in enumerate(segments, 1):
        key = recording_key(prefix, site, path)
        size = path.stat().st_size
        try:
            if object_size(s3, bucket, key) == size:
                summary.skipped += 1
                say(f"recordings: {number}/{len(segments)} {path.name} is already uploaded")
                continue
            s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "video/mp4"})
        except (BotoCoreError, ClientError, S3UploadFailedError) as error:
            summary.failure = (f"recordings not uploaded: the bucket {bucket} cannot be reached ({_reason(error)}); "
                               f"{len(segments) - number + 1} segment(s) stay in {folder}, and the same upload "
                               f"sends them later (`hybridcam recordings upload`).")
            say(summary.failure)
            return summary
        summary.uploaded += 1
        summary.bytes_sent += size
        say(f"recordings: {number}/{len(segments)} {path.name} uploaded ({size / 1e6:.1f} MB)")
    say(f"recordings: {summary.uploaded} uploaded ({summary.bytes_sent / 1e6:.1f} MB), {summary.skipped} already there")
    return summary
