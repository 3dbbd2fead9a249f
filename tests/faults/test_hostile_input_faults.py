"""Hostile input against the new surfaces (security review, issue 24): each scenario prints its figures.

14. 100 malformed WebRTC offers and 100 half-open ones (ICE never completes) against a real dashboard
    process; afterwards a real aiortc viewer still connects.
15. A NaN FaceMatches on the results queue (moto SQS), and one written straight onto the face_matches
    stream: the results bridge, the compositor (face labels on) and the dashboard keep running, the
    page's state stays valid JSON, and a good match still arrives.
16. A flood of /events connections: the dashboard caps them, answers 503 past the cap, keeps serving
    everything else, and takes pages again when the flood is gone.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import boto3
import httpx
import msgpack
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from devstack.servers import LocalMoto, LocalRedis, free_port
from shared.schemas import FaceMatch, FaceMatches, encode_text
from shared.stream_bus import DEADLETTER_STREAM, FACE_MATCHES_STREAM, PAYLOAD_FIELD, StreamBus
from tests.faults.report import FaultResult, record_fault
from tests.fixtures.pipeline import ServiceRunner, write_site
from tests.fixtures.servers import wait_until_answers

MALFORMED_SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video x UDP 1\r\n"
CAMERAS = [{"id": f"hostwide{os.getpid()}", "role": "master", "source": "synthetic"},
           {"id": f"hostleft{os.getpid()}", "role": "slave", "source": "synthetic",
            "covers": {"master": f"hostwide{os.getpid()}", "region": [0.0, 0.0, 0.6, 1.0]}}]


def _env(redis_server: LocalRedis, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis_server.url, "PYTHONUNBUFFERED": "1",
                "HYBRIDCAM_SITE_FILE": str(write_site(tmp_path / "site.yaml", fps=5, width=640, height=360, people=2,
                                                      cameras=CAMERAS)), **extra})
    return env


def _runner(env: dict[str, str], tmp_path: Path) -> ServiceRunner:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return ServiceRunner(env, logs)


def _start_dashboard(runner: ServiceRunner, tmp_path: Path, *args: str) -> str:
    port = free_port()
    process = runner.start("dashboard", "--port", str(port), *args)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/health", process, None, timeout_s=90)
    return url


async def _offer_sdp() -> tuple[RTCPeerConnection, str]:
    peer = RTCPeerConnection()
    peer.addTransceiver("video", direction="recvonly")
    await peer.setLocalDescription(await peer.createOffer())
    return peer, peer.localDescription.sdp


async def _viewer_connects(url: str, timeout_s: float) -> float | None:
    """Seconds until a real aiortc viewer is connected, or None."""
    peer, sdp = await _offer_sdp()
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = (await client.post(f"{url}/api/webrtc/offer", json={"sdp": sdp, "type": "offer", "source": "program"}))
            if answer.status_code != 200:
                return None
            reply = answer.json()
            await peer.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))
            while time.monotonic() - started < timeout_s:
                if peer.connectionState == "connected":
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
            return None
    finally:
        await peer.close()


@pytest.mark.faults_slow
def test_12_malformed_and_half_open_webrtc_offers(redis_server: LocalRedis, tmp_path: Path) -> None:
    runner = _runner(_env(redis_server, tmp_path, HYBRIDCAM_DASHBOARD_WEBRTC_MAX_VIEWERS="16",
                          HYBRIDCAM_DASHBOARD_WEBRTC_MAX_VIEWERS_PER_CLIENT="16",
                          HYBRIDCAM_DASHBOARD_WEBRTC_CONNECT_TIMEOUT_S="5"), tmp_path)
    try:
        url = _start_dashboard(runner, tmp_path, "--program-h264-url", f"http://127.0.0.1:{free_port()}/stream")

        async def scenario() -> dict[str, float]:
            figures: dict[str, float] = {"malformed_400": 0, "half_open_admitted": 0, "half_open_503": 0, "max_senders": 0}
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                for _ in range(100):
                    answer = await client.post("/api/webrtc/offer", json={"sdp": MALFORMED_SDP, "type": "offer"})
                    figures["malformed_400"] += answer.status_code == 400
                figures["senders_after_malformed"] = (await client.get("/api/webrtc")).json()["senders"]
                peer, sdp = await _offer_sdp()  # one real offer, posted 100 times, its answers never applied
                await peer.close()
                started, admitted = time.monotonic(), 0
                while admitted < 100 and time.monotonic() - started < 240:
                    answer = await client.post("/api/webrtc/offer", json={"sdp": sdp, "type": "offer"})
                    if answer.status_code == 200:
                        admitted += 1
                    else:
                        figures["half_open_503"] += answer.status_code == 503
                        await asyncio.sleep(0.5)
                    figures["max_senders"] = max(figures["max_senders"], (await client.get("/api/webrtc")).json()["senders"])
                figures["half_open_admitted"] = admitted
                figures["half_open_s"] = time.monotonic() - started
            connected = await _viewer_connects(url, 60)
            figures["viewer_connect_s"] = -1 if connected is None else connected
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                state = (await client.get("/api/webrtc")).json()
            figures.update({f"counter_{k}": v for k, v in state["viewer_counters"].items()})
            return figures

        figures = asyncio.run(scenario())
        print("\nscenario 14 (WebRTC offers):", json.dumps({k: round(v, 2) for k, v in figures.items()}))
        assert figures["malformed_400"] == 100 and figures["senders_after_malformed"] == 0
        assert figures["half_open_admitted"] == 100 and figures["max_senders"] <= 16
        assert figures["counter_unconnected_released"] >= 84
        assert figures["viewer_connect_s"] >= 0, "a real viewer could not connect after the hostile offers"
        record_fault(FaultResult(
            scenario="14 hostile WebRTC offers", injected="100 malformed + 100 half-open offers", recovery_s=figures["viewer_connect_s"],
            expected=100, seen=int(figures["half_open_admitted"]), lost=0, duplicated=0,
            notes=(f"100/100 malformed answered 400 with no sender left; half-open admitted in waves of at most "
                   f"{int(figures['max_senders'])} senders over {figures['half_open_s']:.0f} s "
                   f"({int(figures['half_open_503'])} answered 503 meanwhile), each released after the 5 s connect limit; "
                   f"then a real viewer connected in {figures['viewer_connect_s']:.1f} s")))
    finally:
        runner.stop_all()


def _nan_face_matches_body(camera_id: str) -> bytes:
    match = {"person": "Nan Person", "face_id": "f", "similarity": math.nan, "box": [math.nan, 1.0, math.inf, 2.0],
             "crop_jpeg": None}
    return msgpack.packb({"schema": "face_matches", "v": 1, "site": "s", "frame_id": f"{camera_id}-1-1", "camera_id": camera_id,
                          "seq": 1, "capture_ts": math.nan, "processed_ts": math.inf, "width": 640, "height": 360,
                          "matches": [match], "alerts": []}, use_bin_type=True)


@pytest.mark.faults_slow
def test_13_nan_face_matches_on_the_results_queue(redis_server: LocalRedis, moto_server: LocalMoto, tmp_path: Path) -> None:
    moto = moto_server
    camera = CAMERAS[0]["id"]
    if True:
        aws = moto.environment()
        sqs = boto3.client("sqs", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_DEFAULT_REGION"],
                           aws_access_key_id="testing", aws_secret_access_key="testing", aws_session_token="testing")
        queue_url = sqs.create_queue(QueueName=f"hostile-results-{os.getpid()}")["QueueUrl"]
        preview_port = free_port()
        runner = _runner(_env(redis_server, tmp_path, **moto.environment(), HYBRIDCAM_BRIDGE_QUEUE_URL=queue_url,
                              HYBRIDCAM_BRIDGE_WAIT_TIME_S="1", HYBRIDCAM_COMPOSITOR_FACE_LABELS="true"), tmp_path)
        try:
            runner.start("capture")
            compositor = runner.start("compositor", "--outputs", "mjpeg", "--output-dir", str(tmp_path / "program"),
                                      "--fps", "5", "--preview-port", str(preview_port))
            bridge = runner.start("results-bridge")
            url = _start_dashboard(runner, tmp_path)
            dashboard = runner.processes[-1]
            wait_until_answers(f"http://127.0.0.1:{preview_port}/", compositor, None, timeout_s=90)
            bus = StreamBus(redis_server.url)
            dead_before = bus.redis.xlen(DEADLETTER_STREAM)
            sqs.send_message(QueueUrl=queue_url, MessageBody=encode_text_raw(_nan_face_matches_body(camera)))
            bus.redis.xadd(FACE_MATCHES_STREAM, {PAYLOAD_FIELD: _nan_face_matches_body(camera)})
            good = FaceMatches(site="s", frame_id=f"{camera}-2-2", camera_id=camera, seq=2, capture_ts=time.time(),
                               processed_ts=time.time(), width=640, height=360,
                               matches=[FaceMatch(person="Good Person", face_id="g", similarity=91.0, box=(10.0, 10.0, 60.0, 60.0))])
            time.sleep(3)
            started = time.monotonic()
            sqs.send_message(QueueUrl=queue_url, MessageBody=encode_text(good))
            arrived = None
            while time.monotonic() - started < 60 and arrived is None:
                state = httpx.get(f"{url}/api/state", timeout=10)
                assert state.status_code == 200
                if any(hit["person"] == "Good Person" for hit in state.json().get("watch_hits", [])):
                    arrived = time.monotonic() - started
                time.sleep(0.5)
            dead = bus.redis.xlen(DEADLETTER_STREAM) - dead_before
            with httpx.stream("GET", f"http://127.0.0.1:{preview_port}/stream", timeout=20) as stream:
                picture = next(stream.iter_bytes())
            alive = {name: p.poll() is None for name, p in (("compositor", compositor), ("bridge", bridge), ("dashboard", dashboard))}
            print(f"\nscenario 15 (NaN FaceMatches): alive {alive}, dead-lettered {dead}, "
                  f"good match on the page after {arrived} s, /api/state 200, program still rendering ({len(picture)} bytes read)")
            assert all(alive.values()), runner.logs()
            assert arrived is not None, runner.logs()
            assert dead >= 1  # the bridge dead-letters the queue message; stream readers count and skip theirs
            record_fault(FaultResult(
                scenario="15 NaN FaceMatches", injected="NaN/inf FaceMatches on the results queue and on face_matches",
                recovery_s=None, expected=1, seen=1, lost=0, duplicated=0,
                notes=f"bridge, compositor (face labels on) and dashboard kept running; {dead} entries dead-lettered; "
                      f"/api/state stayed 200; a good match reached the page {arrived:.1f} s after it was sent"))
        finally:
            runner.stop_all()


def encode_text_raw(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def test_14_a_flood_of_event_streams(redis_server: LocalRedis, tmp_path: Path) -> None:
    runner = _runner(_env(redis_server, tmp_path, HYBRIDCAM_DASHBOARD_MAX_EVENT_STREAMS="64"), tmp_path)
    try:
        url = _start_dashboard(runner, tmp_path)
        flood = 300
        opened = refused = 0
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=60.0),
                          limits=httpx.Limits(max_connections=flood + 10)) as client, ExitStack() as held:
            for _ in range(flood):
                response = held.enter_context(client.stream("GET", "/events"))
                if response.status_code == 200:
                    opened += 1
                else:
                    refused += response.status_code == 503
            flood_s = time.monotonic() - started
            began = time.monotonic()
            state = httpx.get(f"{url}/api/state", timeout=10)
            state_s = time.monotonic() - began
            counters = httpx.get(f"{url}/health", timeout=10).json()["counters"]
        time.sleep(2)
        after = httpx.get(f"{url}/health", timeout=10).json()["counters"]
        with httpx.stream("GET", f"{url}/events", timeout=10) as again:
            back = again.status_code
        print(f"\nscenario 16 (/events flood): {flood} opened in {flood_s:.1f} s: {opened} streams, {refused} answered 503; "
              f"/api/state {state.status_code} in {state_s * 1000:.0f} ms during the flood; pages {counters['pages']:.0f} "
              f"during, {after['pages']:.0f} after; a new page after the flood: {back}")
        assert opened == 64 and refused == flood - 64 and state.status_code == 200
        assert after["pages"] == 0 and back == 200
        record_fault(FaultResult(
            scenario="16 /events flood", injected=f"{flood} /events connections held open", recovery_s=None,
            expected=64, seen=opened, lost=0, duplicated=0,
            notes=f"{refused} answered 503 past the cap; /api/state answered in {state_s * 1000:.0f} ms during the flood; "
                  "every place freed when the flood closed"))
    finally:
        runner.stop_all()


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("the fault scenarios run on Linux", allow_module_level=True)
