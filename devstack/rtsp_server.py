"""Real RTSP cameras on this machine: recorded footage served by GStreamer's RTSP server.

Tests, the benchmarks and ``hybridcam demo --rtsp`` use it wherever a site would have IP
cameras. The server (``rtsp_gst_server.py``) runs under a Python that has Debian's GStreamer
bindings (``python3-gst-1.0``, ``gir1.2-gst-rtsp-server-1.0``; ``scripts/install_system_packages.sh``
installs them), usually the system's ``/usr/bin/python3``, as its own process: it can be stopped,
restarted on the same port and told to stall a stream while its connections stay open.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

from devstack.servers import LocalStackError, free_port

SERVER_SCRIPT = Path(__file__).with_name("rtsp_gst_server.py")
PROBE = "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"


@dataclass(frozen=True)
class RtspMount:
    """One camera of the server: ``files`` (H.264 or H.265, same codec) served back to back, looped."""

    name: str
    codec: str
    files: tuple[Path, ...]
    fps: float = 0.0  # 0: the files' own rate

    def spec(self) -> str:
        rate = f"@{self.fps:g}" if self.fps else ""
        return f"{self.name}={self.codec}:{'+'.join(str(f) for f in self.files)}{rate}"


def gstreamer_python() -> str:
    """A Python interpreter that can import GStreamer's RTSP server bindings."""
    candidates = ["/usr/bin/python3", shutil.which("python3") or ""]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            if subprocess.run([candidate, "-c", PROBE], capture_output=True, timeout=30).returncode == 0:
                return candidate
        except (OSError, subprocess.TimeoutExpired):
            continue
    raise LocalStackError(
        "no Python with GStreamer's RTSP server bindings: install the Debian packages python3-gst-1.0 and "
        "gir1.2-gst-rtsp-server-1.0 (scripts/install_system_packages.sh does)"
    )


class LocalRtspServer:
    """The RTSP server as a child process on a loopback port; ``url(name)`` is a camera's address."""

    def __init__(self, mounts: list[RtspMount], port: int | None = None, log_path: Path | None = None) -> None:
        self.mounts = {m.name: m for m in mounts}
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, dict] = {}
        self._lines: Queue[str] = Queue()

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self, timeout_s: float = 60.0) -> LocalRtspServer:
        args = [gstreamer_python(), str(SERVER_SCRIPT), "--port", str(self.port)]
        for mount in self.mounts.values():
            args += ["--mount", mount.spec()]
        stderr = self.log_path.open("a") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
        self._lines = Queue()
        threading.Thread(target=self._read_lines, args=(self.process, self._lines), daemon=True).start()
        line = self._expect(("ready", "error"), timeout_s)
        if not line.startswith("ready"):
            self.stop()
            raise LocalStackError(f"RTSP server did not start: {line}")
        self.info = json.loads(line.split(" ", 1)[1])
        return self

    @staticmethod
    def _read_lines(process: subprocess.Popen[str], lines: Queue[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())
        lines.put("error server exited")

    def _expect(self, prefixes: tuple[str, ...], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                raise LocalStackError(f"RTSP server: no answer {prefixes} within {timeout_s:.0f} s") from None
            if line.startswith(prefixes):
                return line

    def _command(self, command: str, answer: str) -> str:
        if self.process is None or self.process.stdin is None:
            raise LocalStackError("RTSP server is not running")
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._expect((answer, "error"), 10.0)

    def stall(self, name: str) -> None:
        """Keep the stream's connections open but send nothing, as a hung camera does."""
        self._command(f"stall {name}", "ok")

    def resume(self, name: str) -> None:
        self._command(f"resume {name}", "ok")

    def stats(self) -> dict[str, dict[str, int]]:
        """Per mount: frames pushed to clients so far, clients connected now."""
        return json.loads(self._command("stats", "stats").split(" ", 1)[1])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stdin:
            self.process.stdin.close()
        self.process = None

    def restart(self, down_for_s: float = 0.0) -> None:
        """Stop and start again on the same port (clients see the connection drop and refusals meanwhile)."""
        self.stop()
        time.sleep(down_for_s)
        self.start()

    def __enter__(self) -> LocalRtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
