"""The Cal.com call budget of one process: a sliding window in memory.

Used on ``memory://`` (one replica), and by :class:`RedisBudget` as each
replica's share while Redis is unreachable. See :class:`~availability.core.ports.Budget`.
"""

from __future__ import annotations

from collections import deque

from availability.core.clock import Clock
from availability.core.ports import BUDGET_WINDOW, Priority

__all__ = ["LocalBudget", "allowed_calls"]


def allowed_calls(limit: int, priority: Priority, background_share: float) -> int:
    """How many calls of a window ``priority`` may use: background work only its share,
    so interactive misses, which a caller is waiting for, come first."""
    return limit if priority is Priority.INTERACTIVE else int(limit * background_share)


class LocalBudget:
    """Any ``window`` seconds hold at most ``limit`` calls, so it stays under Cal.com's
    fixed windows however they are aligned."""

    def __init__(
        self,
        limit: int,
        *,
        clock: Clock,
        background_share: float = 0.8,
        window: float = BUDGET_WINDOW,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._background_share = background_share
        self._window = window
        self._taken: deque[float] = deque()
        self._paused_until = 0.0

    @property
    def used(self) -> int:
        """Calls taken in the current window."""
        self._expire(self._clock())
        return len(self._taken)

    async def in_window(self) -> int:
        return self.used

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        now = self._clock()
        if now < self._paused_until:
            return False
        self._expire(now)
        if len(self._taken) >= allowed_calls(self.limit, priority, self._background_share):
            return False
        self._taken.append(now)
        return True

    def _expire(self, now: float) -> None:
        while self._taken and self._taken[0] <= now - self._window:
            self._taken.popleft()

    async def close(self) -> None:
        return None
