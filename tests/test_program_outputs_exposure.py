"""The compositor's preview (MJPEG, HLS) and H.264 servers have no authentication: they bind loopback
unless told otherwise, and cap their clients (security review, finding 5)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from services.compositor.outputs.h264_http import H264HttpStream
from services.compositor.outputs.mjpeg_http import MjpegHttpPreview
from services.compositor.settings import CompositorSettings


def _outside_address() -> str | None:
    """This host's address on a network (not loopback), if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_outputs_bind_loopback_by_default() -> None:
    assert CompositorSettings(_env_file=None).compositor_output_host == "127.0.0.1"  # type: ignore[call-arg]
    preview, h264 = MjpegHttpPreview(port=0), H264HttpStream(port=0)
    try:
        assert preview.httpd.server_address[0] == "127.0.0.1"
        assert h264.httpd.server_address[0] == "127.0.0.1"
        outside = _outside_address()
        if outside is not None:  # seen from the network, nothing answers
            for port in (preview.port, h264.port):
                with pytest.raises(OSError):
                    socket.create_connection((outside, port), timeout=2).close()
    finally:
        preview.httpd.server_close()
        h264.httpd.server_close()


def test_exposure_is_an_explicit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDCAM_COMPOSITOR_OUTPUT_HOST", "0.0.0.0")
    assert CompositorSettings(_env_file=None).compositor_output_host == "0.0.0.0"  # type: ignore[call-arg]


@pytest.mark.parametrize("kind", ["mjpeg", "h264"])
def test_clients_past_the_cap_get_503_and_a_freed_place_is_reused(kind: str) -> None:
    output = MjpegHttpPreview(port=0, fps=5, max_clients=2) if kind == "mjpeg" else H264HttpStream(port=0, max_clients=2)
    output._thread.start()
    output.idle_check_s = 0.2
    url = f"http://127.0.0.1:{output.port}/stream"
    try:
        first, second = urllib.request.urlopen(url, timeout=5), urllib.request.urlopen(url, timeout=5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 503 and output.httpd.refused == 1
        first.close()
        second.close()
        # with nothing to send, a stream notices its client hung up at its next idle check
        deadline = time.monotonic() + 10
        while output.httpd.clients and time.monotonic() < deadline:
            time.sleep(0.05)
        assert output.httpd.clients == 0, "closed clients still hold their places"
        urllib.request.urlopen(url, timeout=5).close()
    finally:
        output.close()
