"""Backoff for every retry loop: doubling delays up to a cap, full jitter inside the ceiling, reset after success."""

from __future__ import annotations

import pytest

from shared.backoff import Backoff


def test_delays_double_up_to_the_cap_and_restart_after_reset() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_full_jitter_stays_inside_the_ceiling() -> None:
    backoff = Backoff(0.1, 0.4, jitter=True)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 0.4 for d in delays) and max(delays[3:]) > 0.2  # jitter spreads, the cap holds


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="first_s <= cap_s"):
        Backoff(2.0, 1.0)
