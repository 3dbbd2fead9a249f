"""Capped exponential backoff, the one way every service waits before trying again."""

from __future__ import annotations

import random


class Backoff:
    """Delays first_s, 2*first_s, 4*first_s, ... never over cap_s; with jitter, each is uniform in [0, delay] ("full jitter")."""

    def __init__(self, first_s: float, cap_s: float, jitter: bool = False) -> None:
        if first_s <= 0 or cap_s < first_s:
            raise ValueError(f"backoff needs 0 < first_s <= cap_s, got {first_s} and {cap_s}")
        self.first_s = first_s
        self.cap_s = cap_s
        self.jitter = jitter
        self.attempts = 0

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (1 = the first retry)."""
        return min(self.cap_s, self.first_s * 2 ** max(attempt - 1, 0))

    def next_delay(self) -> float:
        """The wait before the next retry; each call doubles the ceiling up to the cap."""
        self.attempts += 1
        ceiling = self.ceiling(self.attempts)
        return random.uniform(0.0, ceiling) if self.jitter else ceiling

    def reset(self) -> None:
        """Start again from first_s (after a success)."""
        self.attempts = 0
