"""The dashboard's request guards (security review, finding 12), against a real dashboard process:
a DNS-rebinding Host is refused in the loopback no-token mode, a cross-site or non-JSON POST cannot open
a WebRTC viewer, ``?token=`` leaves the address bar through a redirect that sets the cookie, wrong
tokens are rate-limited per client, and ``/events`` and ``/program.mjpg`` streams are capped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from devstack.servers import LocalRedis, free_port
from services.compositor.outputs.mjpeg_http import MjpegHttpPreview
from tests.fixtures.cloud_edge import write_cloud_site
from tests.fixtures.servers import wait_until_answers

TOKEN = "guard-test-token"


def _dashboard(redis_server: LocalRedis, tmp_path: Path, **env_extra: str) -> tuple[subprocess.Popen, str]:
    site = write_cloud_site(tmp_path / "site.yaml", master="wide", slave="north")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site),
                **{f"HYBRIDCAM_DASHBOARD_{k.upper()}": v for k, v in env_extra.items()}})
    process = subprocess.Popen([sys.executable, "-m", "hybridcam", "dashboard", "--port", str(port)], env=env, cwd=tmp_path,
                               stdout=(tmp_path / "dashboard.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/health", process, tmp_path / "dashboard.log")
    return process, url


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)


def test_loopback_mode_refuses_a_rebinding_host_and_cross_site_offers(redis_server: LocalRedis, tmp_path: Path) -> None:
    dashboard, url = _dashboard(redis_server, tmp_path)
    try:
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert httpx.get(f"{url}/api/state", headers={"Host": host}, timeout=5).status_code == 200, host
        rebinding = httpx.get(f"{url}/api/state", headers={"Host": f"attacker.example:{port}"}, timeout=5)
        assert rebinding.status_code == 421 and "loopback" in rebinding.text
        assert "person" not in rebinding.text
        offer = '{"sdp": "v=0", "type": "offer", "source": "program"}'
        # what a no-cors fetch from another site can send: text/plain, with the other site's Origin
        no_cors = httpx.post(f"{url}/api/webrtc/offer", content=offer, timeout=5,
                             headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://attacker.example",
                                      "Sec-Fetch-Site": "cross-site"})
        assert no_cors.status_code == 403
        plain = httpx.post(f"{url}/api/webrtc/offer", content=offer, headers={"Content-Type": "text/plain"}, timeout=5)
        assert plain.status_code == 415
        state = httpx.get(f"{url}/api/webrtc", timeout=5).json()
        assert state["senders"] == 0
        same_origin = httpx.post(f"{url}/api/webrtc/offer", content=offer, timeout=5,
                                 headers={"Content-Type": "application/json", "Origin": url})
        assert same_origin.status_code not in (403, 415)  # reaches the route (which answers 404: no program here)
    finally:
        _stop(dashboard)


def test_token_in_the_address_is_swapped_for_a_cookie_and_wrong_tokens_are_rate_limited(
        redis_server: LocalRedis, tmp_path: Path) -> None:
    dashboard, url = _dashboard(redis_server, tmp_path, token=TOKEN, login_failures="5")
    try:
        first = httpx.get(f"{url}/?token={TOKEN}&live=program", headers={"Accept": "text/html"}, timeout=5)
        assert first.status_code == 303 and first.headers["location"] == "/?live=program"
        assert f"hybridcam_token={TOKEN}" in first.headers["set-cookie"]
        with httpx.Client(base_url=url, timeout=5) as browser:
            browser.cookies.set("hybridcam_token", TOKEN)
            assert browser.get("/?live=program").status_code == 200
        for _ in range(5):
            assert httpx.get(f"{url}/api/state", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        locked = httpx.get(f"{url}/api/state", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert locked.status_code == 429 and locked.headers["retry-after"] == "60"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        _stop(dashboard)


def test_event_and_program_streams_are_capped(redis_server: LocalRedis, tmp_path: Path) -> None:
    preview = MjpegHttpPreview(port=0, fps=5)
    preview.start(None)
    dashboard, url = _dashboard(redis_server, tmp_path, max_event_streams="3", max_program_streams="2",
                                program_url=f"http://127.0.0.1:{preview.port}/stream")
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(5.0, read=30.0)) as client, ExitStack() as held:
            events = [held.enter_context(client.stream("GET", "/events")) for _ in range(3)]
            assert all(r.status_code == 200 for r in events)
            refused = client.get("/events")
            assert refused.status_code == 503 and "MAX_EVENT_STREAMS" in refused.text
            programs = [held.enter_context(client.stream("GET", "/program.mjpg")) for _ in range(2)]
            assert all(r.status_code == 200 for r in programs)
            assert client.get("/program.mjpg").status_code == 503
            counters = client.get("/health").json()["counters"]
            assert counters["refused_events"] == 1 and counters["refused_program"] == 1
            events[0].close()
            programs[0].close()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                counters = client.get("/health").json()["counters"]
                if counters["pages"] < 3 and counters["program_streams"] < 2:
                    break
                time.sleep(0.2)
            assert counters["pages"] == 2 and counters["program_streams"] == 1, "a closed stream kept its place"
            with client.stream("GET", "/events") as again:
                assert again.status_code == 200
    finally:
        _stop(dashboard)
        preview.close()
