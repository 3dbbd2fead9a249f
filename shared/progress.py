"""Health from progress: when a service's main loop last did its work, and a watchdog for long stalls.

A constant "ok" hides a hung loop. Each service beats a :class:`Progress` from its loop; its health
is degraded after ``stall_after_s`` without a beat and failed after ``fail_after_s`` (the /health
endpoint then answers 503 and the compose health check fails). Docker's restart policy does not
restart an unhealthy container, so :func:`exit_on_stall` ends the process after a longer stall and
the restart policy brings it back.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from shared.schemas import HealthState

log = logging.getLogger(__name__)

EXIT_STALLED = 70  # EX_SOFTWARE: the loop stopped making progress


class Progress:
    def __init__(self, stall_after_s: float, fail_after_s: float | None = None) -> None:
        self.stall_after_s = stall_after_s
        self.fail_after_s = fail_after_s if fail_after_s is not None else 3 * stall_after_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age_s(self) -> float:
        return time.monotonic() - self.last

    def state(self, healthy_state: HealthState = "ok", message: str = "") -> tuple[HealthState, str]:
        """``healthy_state``/``message`` while progress is recent; degraded, then failed, as it ages."""
        age = self.age_s()
        if age > self.fail_after_s:
            return "failed", f"no progress for {age:.0f} s"
        if age > self.stall_after_s:
            return "degraded", f"no progress for {age:.1f} s"
        return healthy_state, message


def exit_on_stall(progress: Progress, exit_after_s: float, what: str, check_every_s: float = 1.0) -> threading.Thread | None:
    """Start a daemon thread that ends the process (exit 70) once ``progress`` is older than ``exit_after_s``.

    0 disables it; it never fires before health has reported failed. The exit is immediate
    (os._exit): a stuck loop would never reach a clean shutdown.
    """
    if exit_after_s <= 0:
        return None
    exit_after_s = max(exit_after_s, progress.fail_after_s)

    def watch() -> None:
        while True:
            time.sleep(check_every_s)
            age = progress.age_s()
            if age > exit_after_s:
                log.critical("%s made no progress for %.0f s (limit %.0f s); exiting so the supervisor restarts it",
                             what, age, exit_after_s)
                logging.shutdown()
                os._exit(EXIT_STALLED)

    thread = threading.Thread(target=watch, name="stall-watchdog", daemon=True)
    thread.start()
    return thread
