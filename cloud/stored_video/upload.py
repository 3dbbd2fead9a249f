"""Multipart upload of a video to the stack's bucket, resumable after an interruption.

The upload's state (bucket, key, upload id, the file's size and modification time) is kept in a small JSON
file in the output folder. Run the same command again and only the missing parts travel: S3's ListParts says
which parts it already holds. An interruption (Ctrl-C) or a network failure (a dropped connection, a
time-out, S3 answering 5xx or throttling) keeps the state, so the next run sends only what is missing;
any other failure (access denied, the upload gone) aborts the multipart upload, so no half-uploaded
parts stay behind (the bucket's lifecycle rule also aborts forgotten ones after a day).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.s3_objects import object_size

PART_BYTES = 8 * 1024 * 1024  # S3's minimum is 5 MiB for every part but the last
KEY_PREFIX = "videos/"

Progress = Callable[[int], None]  # bytes just sent
PASSING_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable", "Throttling",
                           "RequestTimeTooSkewed", "500", "502", "503", "504"})


def resumable_failure(error: BaseException) -> bool:
    """An interruption or a failure of the way to S3, after which the same upload can go on later."""
    if isinstance(error, (KeyboardInterrupt, BotoCoreError, OSError)):
        return True
    return isinstance(error, ClientError) and str(error.response.get("Error", {}).get("Code", "")) in PASSING_CODES


@dataclass
class UploadState:
    bucket: str
    key: str
    upload_id: str
    size_bytes: int
    mtime_ns: int

    def matches(self, path: Path, bucket: str, key: str) -> bool:
        stat = path.stat()
        return (self.bucket, self.key, self.size_bytes, self.mtime_ns) == (bucket, key, stat.st_size, stat.st_mtime_ns)


def video_key(path: Path) -> str:
    """A stable key for the file: its name plus a short digest of name, size and modification time."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{KEY_PREFIX}{path.stem}-{digest}{path.suffix.lower()}"


def upload_video(s3: Any, path: Path, bucket: str, state_file: Path, progress: Progress | None = None) -> str:
    """Upload `path` (or finish an interrupted upload of it); return the object's key."""
    key = video_key(path)
    size = path.stat().st_size
    if object_size(s3, bucket, key) == size:
        if progress:
            progress(size)
        state_file.unlink(missing_ok=True)
        return key
    state = _resumable_state(s3, path, bucket, key, state_file)
    if state is None:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="video/mp4")["UploadId"]
        state = UploadState(bucket, key, upload_id, size, path.stat().st_mtime_ns)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(asdict(state)))
    try:
        parts = _send_parts(s3, path, state, progress)
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=state.upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException as error:
        if not resumable_failure(error):
            abort_upload(s3, state)
            state_file.unlink(missing_ok=True)
        raise  # otherwise the state file stays: the next run resumes
    state_file.unlink(missing_ok=True)
    return key


def abort_upload(s3: Any, state: UploadState) -> None:
    try:
        s3.abort_multipart_upload(Bucket=state.bucket, Key=state.key, UploadId=state.upload_id)
    except ClientError:
        pass  # already completed or aborted


def _resumable_state(s3: Any, path: Path, bucket: str, key: str, state_file: Path) -> UploadState | None:
    if not state_file.exists():
        return None
    try:
        state = UploadState(**json.loads(state_file.read_text()))
    except (ValueError, TypeError):
        return None
    if not state.matches(path, bucket, key):
        abort_upload(s3, state)
        return None
    return state


def _uploaded_parts(s3: Any, state: UploadState) -> dict[int, dict[str, Any]]:
    parts: dict[int, dict[str, Any]] = {}
    marker = 0
    while True:
        try:
            page = s3.list_parts(Bucket=state.bucket, Key=state.key, UploadId=state.upload_id, PartNumberMarker=marker)
        except ClientError:
            return {}
        for part in page.get("Parts", []):
            parts[int(part["PartNumber"])] = part
        if not page.get("IsTruncated"):
            return parts
        marker = int(page["NextPartNumberMarker"])


def _send_parts(s3: Any, path: Path, state: UploadState, progress: Progress | None) -> list[dict[str, Any]]:
    done = _uploaded_parts(s3, state)
    completed: list[dict[str, Any]] = []
    with path.open("rb") as file:
        number = 1
        while True:
            chunk = file.read(PART_BYTES)
            if not chunk:
                break
            previous = done.get(number)
            if previous is not None and int(previous["Size"]) == len(chunk):
                etag = previous["ETag"]
            else:
                etag = s3.upload_part(
                    Bucket=state.bucket, Key=state.key, UploadId=state.upload_id, PartNumber=number, Body=chunk
                )["ETag"]
            completed.append({"PartNumber": number, "ETag": etag})
            if progress:
                progress(len(chunk))
            number += 1
    if not completed:  # an empty file: S3 still wants one part
        etag = s3.upload_part(Bucket=state.bucket, Key=state.key, UploadId=state.upload_id, PartNumber=1, Body=b"")["ETag"]
        completed.append({"PartNumber": 1, "ETag": etag})
    return completed
