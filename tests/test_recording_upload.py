"""The program recordings go to the stack's bucket after a run: resumable, idempotent, and one sentence when the
bucket cannot be reached. Against the real moto server; the last test runs the real compositor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest

from devstack.servers import LocalRedis, free_port
from hybridcam.cli import main as hybridcam_main
from services.compositor.outputs.recording_upload import recording_key, s3_client, upload_recordings

SITE = """
site: upload-site
defaults: {width: 320, height: 180, fps: 8}
synthetic_scene: {seed: 3, people: 2, scenario: wander}
cameras:
  - {id: wide, role: master, source: synthetic}
"""


def new_bucket() -> str:
    name = f"recordings-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def bucket_listing(bucket: str) -> dict[str, int]:
    answer = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return {item["Key"]: int(item["Size"]) for item in answer.get("Contents", [])}


def segments(folder: Path, sizes: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for index, size in enumerate(sizes):
        path = folder / f"program-20261201-120000-{index:05d}.mp4"
        path.write_bytes(rng.bytes(size))
        paths.append(path)
    return paths


def test_upload_is_idempotent_and_sends_only_what_the_bucket_lacks(aws_env: dict[str, str], tmp_path: Path) -> None:
    bucket = new_bucket()
    folder = tmp_path / "recordings"
    files = segments(folder, [300_000, 9 * 1024 * 1024, 50_000])  # the middle one goes as a multipart upload
    said: list[str] = []
    first = upload_recordings(s3_client(), folder, bucket, "upload-site", said.append)
    assert (first.uploaded, first.skipped, first.ok) == (3, 0, True)
    assert bucket_listing(bucket) == {f"recordings/upload-site/{path.name}": path.stat().st_size for path in files}
    body = boto3.client("s3").get_object(Bucket=bucket, Key=recording_key("recordings/", "upload-site", files[1]))["Body"]
    assert body.read() == files[1].read_bytes()
    assert said[0].startswith("recordings: 3 segment(s), 9.8 MB, to s3://") and "3/3" in said[-2]

    again = upload_recordings(s3_client(), folder, bucket, "upload-site", said.append)
    assert (again.uploaded, again.skipped) == (0, 3), "what the bucket holds with the same size is not sent again"

    # An interrupted run: one object missing, one cut short; only those two travel.
    boto3.client("s3").delete_object(Bucket=bucket, Key=recording_key("recordings/", "upload-site", files[0]))
    boto3.client("s3").put_object(Bucket=bucket, Key=recording_key("recordings/", "upload-site", files[2]), Body=b"partial")
    resumed = upload_recordings(s3_client(), folder, bucket, "upload-site", said.append)
    assert (resumed.uploaded, resumed.skipped) == (2, 1)
    assert bucket_listing(bucket) == {f"recordings/upload-site/{path.name}": path.stat().st_size for path in files}


def test_an_unreachable_bucket_is_said_in_one_sentence_and_the_segments_stay(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    folder = tmp_path / "recordings"
    files = segments(folder, [1000, 2000])
    said: list[str] = []
    started = time.monotonic()
    summary = upload_recordings(s3_client("us-east-1"), folder, "hybridcam-frames", "upload-site", said.append)
    assert time.monotonic() - started < 30
    assert not summary.ok and summary.uploaded == 0
    assert summary.failure.startswith("recordings not uploaded: the bucket hybridcam-frames cannot be reached (")
    assert summary.failure.endswith(f"2 segment(s) stay in {folder}, and the same upload sends them later "
                                    "(`hybridcam recordings upload`).")
    assert said[-1] == summary.failure and all(path.exists() for path in files)


def test_the_recordings_command_uploads_a_folder(aws_env: dict[str, str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bucket = new_bucket()
    folder = tmp_path / "recordings"
    segments(folder, [4000, 5000])
    assert hybridcam_main(["recordings", "upload", "--folder", str(folder), "--site", "north", "--bucket", bucket]) == 0
    printed = capsys.readouterr().out
    assert "recordings: 2 uploaded (0.0 MB), 0 already there" in printed
    assert set(bucket_listing(bucket)) == {f"recordings/north/program-20261201-120000-0000{i}.mp4" for i in (0, 1)}


def test_the_compositor_uploads_its_recordings_when_the_program_ends(aws_env: dict[str, str], redis_server: LocalRedis,
                                                                      tmp_path: Path) -> None:
    bucket = new_bucket()
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    program = tmp_path / "program"
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site),
           "HYBRIDCAM_COMPOSITOR_FPS": "8", "HYBRIDCAM_COMPOSITOR_WIDTH": "320", "HYBRIDCAM_COMPOSITOR_HEIGHT": "180",
           "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mp4", "HYBRIDCAM_COMPOSITOR_SEGMENT_S": "2",
           "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(program), "HYBRIDCAM_COMPOSITOR_UPLOAD_RECORDINGS": "true",
           "HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET": bucket, "HYBRIDCAM_LOG_LEVEL": "INFO"}

    def run(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "hybridcam", *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    capture, compositor = run("capture", "--duration", "8"), run("compositor", "--duration", "6")
    log, _ = compositor.communicate(timeout=90)
    capture.communicate(timeout=60)
    assert compositor.returncode == 0, log[-3000:]
    recorded = sorted((program / "recordings").glob("program-*.mp4"))
    assert len(recorded) >= 2, log[-3000:]
    assert bucket_listing(bucket) == {f"recordings/upload-site/{path.name}": path.stat().st_size for path in recorded}
    assert f"recordings: {len(recorded)} uploaded" in log

    # The same run with the bucket out of reach: the program is recorded all the same, the log says why not uploaded.
    env.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(tmp_path / "offline")})
    capture, compositor = run("capture", "--duration", "6"), run("compositor", "--duration", "4")
    log, _ = compositor.communicate(timeout=90)
    capture.communicate(timeout=60)
    assert compositor.returncode == 0, log[-3000:]
    assert list((tmp_path / "offline" / "recordings").glob("program-*.mp4"))
    assert f"recordings not uploaded: the bucket {bucket} cannot be reached (" in log


def test_the_demo_uploads_its_recordings_when_it_ends(aws_env: dict[str, str], tmp_path: Path) -> None:
    """`hybridcam demo --upload-recordings` (without the cloud path, into a moto bucket): the whole small site
    runs for 8 s, then the program's segments are in the bucket."""
    bucket = new_bucket()
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    env = {**os.environ, "HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET": bucket, "HYBRIDCAM_COMPOSITOR_SEGMENT_S": "3",
           "HYBRIDCAM_EDGE_THREADS": "1"}
    env.pop("HYBRIDCAM_REDIS_URL", None)
    demo = subprocess.run([sys.executable, "-m", "hybridcam", "demo", "--site", str(site), "--duration", "8", "--no-cloud",
                           "--dashboard-port", "0", "--run-dir", str(tmp_path / "run"), "--upload-recordings"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    recorded = sorted((tmp_path / "run" / "program" / "recordings").glob("program-*.mp4"))
    assert recorded, demo.stdout[-3000:]
    assert bucket_listing(bucket) == {f"recordings/upload-site/{path.name}": path.stat().st_size for path in recorded}
    assert f"recordings: {len(recorded)} uploaded" in demo.stdout
