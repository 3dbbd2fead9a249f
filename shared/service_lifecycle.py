"""The start-up and shut-down every service shares.

An entry point builds its service between ``with ServiceLifecycle.start(...) as service:`` and
the end of the block; the lifecycle does the rest, the same way for every service:

- settings from HYBRIDCAM_* variables, .env and the command line (``--site``, ``--redis-url``,
  ``--health-port`` plus the service's own flags), a bad value failing with one sentence;
- one log format, named after the service;
- the site file, loaded and validated;
- SIGTERM and SIGINT (and ``--duration``) set :attr:`ServiceLifecycle.stop`, which the
  service's loop watches;
- GET /health and /metrics when a health port is set;
- a stall watchdog (:meth:`ServiceLifecycle.watch_progress`): the process exits (code 70) when
  the service's loop made no progress for HYBRIDCAM_STALL_EXIT_S, so the restart policy restarts it;
- SIGUSR1 prints every thread's stack to stderr (a service that seems stuck says where);
- an orderly close: what the service registered with :meth:`ServiceLifecycle.close_with`
  is closed in reverse order, then the health server, even when the service failed.
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry

from shared.health import HealthServer, Snapshot
from shared.logs import configure_logging
from shared.progress import Progress, exit_on_stall
from shared.settings import CommonSettings, load_settings
from shared.site_config import SiteConfig, load_site

ServiceSettingsT = TypeVar("ServiceSettingsT", bound=CommonSettings)


def add_common_arguments(parser: argparse.ArgumentParser, *, runs_for_duration: bool = True) -> None:
    """The flags every service takes: --site, --redis-url and, for services that run a loop, --duration, --health-port."""
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    if runs_for_duration:
        parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until stopped)")
        parser.add_argument("--health-port", type=int, help="serve GET /health on this port")


class ServiceLifecycle(Generic[ServiceSettingsT]):
    """Settings, logging, site, stop signals, duration, health server and close for one service run."""

    def __init__(self, name: str, settings: ServiceSettingsT, duration_s: float = 0.0) -> None:
        self.name = name
        self.settings = settings
        self.duration_s = duration_s
        self.log = configure_logging(name, settings.log_level)
        self.stop = threading.Event()
        self.started = time.monotonic()
        self._site: SiteConfig | None = None
        self._closing = ExitStack()
        self._on_signal: list[Callable[[], None]] = []
        self._on_stop: list[Callable[[], None]] = []
        self._timer: threading.Timer | None = None
        self._health: HealthServer | None = None
        self._previous_handlers: dict[signal.Signals, Any] = {}

    @classmethod
    def start(cls, name: str, settings_model: type[ServiceSettingsT], args: argparse.Namespace,
              **overrides: object) -> ServiceLifecycle[ServiceSettingsT]:
        """Settings from the environment and the common flags of ``args`` (plus the service's ``overrides``)."""
        common = {"site_file": getattr(args, "site", None), "redis_url": getattr(args, "redis_url", None),
                  "health_port": getattr(args, "health_port", None)}
        settings = load_settings(settings_model, **common, **overrides)
        return cls(name, settings, float(getattr(args, "duration", 0.0) or 0.0))

    @property
    def site(self) -> SiteConfig:
        """The site file named by the settings, loaded once."""
        if self._site is None:
            self._site = load_site(self.settings.site_file)
        return self._site

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    # -- what the service registers -------------------------------------------------------

    def close_with(self, close: Callable[[], Any]) -> None:
        """Call ``close`` at the end of the run (last registered, first closed)."""
        self._closing.callback(close)

    def on_stop(self, action: Callable[[], None]) -> None:
        """Also run ``action`` when a stop is requested (a signal or the end of --duration)."""
        self._on_stop.append(action)

    def on_signal(self, action: Callable[[], None]) -> None:
        """Also run ``action`` inside the signal handler, after the stop was requested (it may raise)."""
        self._on_signal.append(action)

    def serve_health(self, snapshot: Snapshot, metrics: CollectorRegistry | None = None) -> None:
        """GET /health (``snapshot``) and /metrics on the health port, if one is set."""
        if self.settings.health_port:
            self._health = HealthServer(self.settings.health_port, snapshot, metrics=metrics).start()

    def watch_progress(self, progress: Progress) -> None:
        """Exit (code 70) once ``progress`` is older than HYBRIDCAM_STALL_EXIT_S (0 = never): a hung loop gets restarted."""
        exit_on_stall(progress, self.settings.stall_exit_s, self.name)

    def request_stop(self) -> None:
        self.stop.set()
        for action in self._on_stop:
            action()

    # -- the run --------------------------------------------------------------------------

    def __enter__(self) -> ServiceLifecycle[ServiceSettingsT]:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.signal(sig, self._signalled)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr
        if self.duration_s:
            self._timer = threading.Timer(self.duration_s, self.request_stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop.set()
        faulthandler.unregister(signal.SIGUSR1)
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._closing.close()
        finally:
            if self._health is not None:
                self._health.stop()
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)

    def _signalled(self, *_: object) -> None:
        self.request_stop()
        for action in self._on_signal:
            action()

