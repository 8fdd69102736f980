"""Clocks: the core never reads the system time itself, it is handed a clock.

A clock is any zero-argument callable returning seconds since the Unix epoch
as a float. Production passes :data:`system_clock`; tests and the sandbox pass
a :class:`ManualClock` and move time explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "system_clock"]

Clock = Callable[[], float]


system_clock: Clock = time.time
"""Wall-clock time in epoch seconds: ``time.time`` itself, not a function calling it (every
read of the cache, and every fast-lane hit, reads the clock)."""


class ManualClock:
    """A clock that only moves when told to (tests, benchmarks)."""

    def __init__(self, now: float) -> None:
        self._now = float(now)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def set(self, now: float) -> None:
        if now < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = float(now)
