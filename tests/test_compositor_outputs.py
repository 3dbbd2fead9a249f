"""Program outputs are real files and streams that FFmpeg reads back: MP4 segments, HLS, RTMP, MJPEG."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from devstack.servers import free_port
from services.compositor.encoder import H264Encoder
from services.compositor.outputs.hls import HlsOutput
from services.compositor.outputs.mjpeg_http import MjpegHttpPreview
from services.compositor.outputs.mp4_segments import Mp4Segments
from services.compositor.outputs.rtmp import RtmpPush
from services.compositor.renderer import ProgramRenderer, RenderOptions, ShotPicture, letterbox_rect, read_timecode

FPS = 10
SECONDS = 4

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None, reason="needs ffmpeg/ffprobe")


def probe(path: Path) -> dict:
    reply = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height,r_frame_rate:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )
    data = json.loads(reply.stdout)
    stream = data["streams"][0]
    return {"codec": stream["codec_name"], "size": (stream["width"], stream["height"]), "rate": stream["r_frame_rate"],
            "duration": float(data["format"]["duration"])}


def program_pictures(count: int) -> list[np.ndarray]:
    renderer = ProgramRenderer(1920, 1080, RenderOptions(timecode=True, pip=False))
    source = np.zeros((720, 1280, 3), np.uint8)
    pictures = []
    for i in range(count):
        source[:] = (i * 7) % 255
        pictures.append(renderer.compose(ShotPicture(source, "cam", capture_ts=1_700_000_000.0 + i / FPS), now=0.0).copy())
    return pictures


@needs_ffmpeg
def test_one_encoder_feeds_mp4_segments_hls_and_rtmp(tmp_path: Path) -> None:
    port = free_port()
    flv = tmp_path / "received.flv"
    server = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/test", "-c", "copy", str(flv)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # let ffmpeg listen; a failed first connect is retried by the push anyway
        encoder = H264Encoder(1920, 1080, FPS, keyframe_s=1.0)
        outputs = [Mp4Segments(tmp_path / "rec", segment_s=2.0), HlsOutput(tmp_path / "hls", 1.0, 0),
                   RtmpPush(f"rtmp://127.0.0.1:{port}/live/test", retry_s=0.5)]
        for output in outputs:
            output.start(encoder.stream)
        for pts, picture in enumerate(program_pictures(FPS * SECONDS)):
            for packet in encoder.encode(picture, pts):
                for output in outputs:
                    output.send_packet(packet)
            time.sleep(0.01)  # give the push thread air, as a live program would
        for packet in encoder.flush():
            for output in outputs:
                output.send_packet(packet)
        for output in outputs:
            output.close()
        encoder.close()
        server.wait(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
    segments = sorted((tmp_path / "rec").glob("program-*.mp4"))
    assert segments, "no MP4 segment written"
    total = 0.0
    for segment in segments:
        info = probe(segment)
        assert info["codec"] == "h264" and info["size"] == (1920, 1080) and info["rate"] == f"{FPS}/1"
        total += info["duration"]
    assert total == pytest.approx(SECONDS, abs=0.3)
    hls = probe(tmp_path / "hls" / "program.m3u8")
    assert hls["codec"] == "h264" and hls["size"] == (1920, 1080) and hls["rate"] == f"{FPS}/1"
    assert hls["duration"] == pytest.approx(SECONDS, abs=0.3)
    assert len(list((tmp_path / "hls").glob("*.ts"))) >= SECONDS - 1
    received = probe(flv)
    assert received["codec"] == "h264" and received["size"] == (1920, 1080)
    assert received["duration"] >= SECONDS - 1.5


def test_timecode_survives_h264(tmp_path: Path) -> None:
    target = tmp_path / "tc.mp4"
    encoder = H264Encoder(1920, 1080, FPS)
    output = Mp4Segments(tmp_path, segment_s=60)
    output.start(encoder.stream)
    pictures = program_pictures(12)
    for pts, picture in enumerate(pictures):
        for packet in encoder.encode(picture, pts):
            output.send_packet(packet)
    for packet in encoder.flush():
        output.send_packet(packet)
    output.close()
    encoder.close()
    target = next(tmp_path.glob("program-*.mp4"))
    with av.open(str(target)) as container:
        decoded = [read_timecode(frame.to_ndarray(format="gray")) for frame in container.decode(video=0)]
    assert decoded == pytest.approx([1_700_000_000.0 + i / FPS for i in range(12)], abs=0.0011)


def test_letterbox_keeps_aspect_and_black_bars() -> None:
    assert letterbox_rect(1280, 720, 1920, 1080) == (0, 0, 1920, 1080)
    assert letterbox_rect(640, 480, 1920, 1080) == (240, 0, 1440, 1080)
    renderer = ProgramRenderer(1920, 1080, RenderOptions(camera_name=False, clock=False, pip=False))
    canvas = renderer.compose(ShotPicture(np.full((480, 640, 3), 200, np.uint8), "cam"))
    assert canvas[:, :240].max() == 0 and canvas[:, 1680:].max() == 0
    assert (canvas[:, 240:1680] == 200).all()


def test_mjpeg_preview_serves_jpeg_pictures() -> None:
    preview = MjpegHttpPreview(port=0, fps=30)
    preview.start(None)
    picture = np.full((1080, 1920, 3), 90, np.uint8)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{preview.port}/stream", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            deadline = time.monotonic() + 5
            while preview.viewers == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            preview.send_picture(picture, now=time.monotonic())
            head = response.read(200)
            assert b"Content-Type: image/jpeg" in head and b"\xff\xd8" in head
        with urllib.request.urlopen(f"http://127.0.0.1:{preview.port}/", timeout=5) as page:
            assert b"/stream" in page.read()
    finally:
        preview.close()


def test_mjpeg_port_also_serves_the_hls_playlist_and_segments(tmp_path) -> None:
    (tmp_path / "program.m3u8").write_text("#EXTM3U\n#EXTINF:2.0,\nprogram-00001.ts\n")
    (tmp_path / "program-00001.ts").write_bytes(b"\x47" * 188)
    (tmp_path / "secret.txt").write_text("not served")
    preview = MjpegHttpPreview(port=0, fps=5, hls_folder=tmp_path)
    preview.start(None)
    base = f"http://127.0.0.1:{preview.port}"
    try:
        with urllib.request.urlopen(f"{base}/hls/program.m3u8", timeout=5) as playlist:
            assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert b"program-00001.ts" in playlist.read()
        with urllib.request.urlopen(f"{base}/hls/program-00001.ts", timeout=5) as segment:
            assert segment.read(1) == b"\x47"
        for path in ("/hls/secret.txt", "/hls/../secret.txt", "/hls/program-00002.ts"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(base + path, timeout=5)
            assert error.value.code == 404
    finally:
        preview.close()
