"""The one service lifecycle: settings from flags, stop on a signal or after --duration, health while running, closing in order."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from devstack.servers import free_port
from shared.errors import ConfigError
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.settings import DEFAULT_SITE_FILE, CommonSettings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDCAM_REDIS_URL", "redis://from-env:6379/0")
    service = ServiceLifecycle.start("t", CommonSettings, parse("--redis-url", "redis://from-flag:6379/1", "--site", str(DEFAULT_SITE_FILE)))
    assert service.settings.redis_url == "redis://from-flag:6379/1"
    assert service.site.cameras[0].id == "wide"
    monkeypatch.setenv("HYBRIDCAM_STREAM_MAXLEN", "3")
    with pytest.raises(ConfigError, match="HYBRIDCAM_STREAM_MAXLEN"):
        ServiceLifecycle.start("t", CommonSettings, parse())


def test_duration_stops_the_run_and_closers_run_last_first() -> None:
    closed: list[str] = []
    started = time.monotonic()
    with ServiceLifecycle.start("t", CommonSettings, parse("--duration", "0.3")) as service:
        service.close_with(lambda: closed.append("first registered"))
        service.close_with(lambda: closed.append("last registered"))
        assert service.stop.wait(5)
    assert 0.25 <= time.monotonic() - started < 3
    assert closed == ["last registered", "first registered"]


def test_sigterm_requests_a_stop_and_health_is_served_until_the_end() -> None:
    port = free_port()
    stopped: list[bool] = []
    with ServiceLifecycle.start("t", CommonSettings, parse("--health-port", str(port))) as service:
        service.on_stop(lambda: stopped.append(True))
        service.serve_health(lambda: {"service": "t", "state": "ok"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert json.loads(answer.read()) == {"service": "t", "state": "ok"}
        os.kill(os.getpid(), signal.SIGTERM)
        assert service.stop.wait(5) and stopped == [True]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_a_failing_run_still_closes() -> None:
    closed: list[bool] = []
    with pytest.raises(RuntimeError), ServiceLifecycle.start("t", CommonSettings, parse()) as service:
        service.close_with(lambda: closed.append(True))
        raise RuntimeError("boom")
    assert closed == [True] and service.stop.is_set()


def test_the_signal_handlers_of_the_caller_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with ServiceLifecycle.start("t", CommonSettings, parse()):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
