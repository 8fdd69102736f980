"""The Cal.com call budget, shared by every replica.

Cal.com allows ``limit`` calls per minute per API key (120 by default) and
blocks the key for a minute past that; the whole fleet shares the key, so the
budget, not CPU, is the scarce resource. Every upstream call (slots and
event-type look-ups) takes one unit first; with none left the caller gets an
answer at once: a cached bucket if one is usable, else
:class:`BudgetExhausted`, never a call over budget.

The window slides (any 60 s holds at most ``limit`` calls), so it stays under
Cal.com's fixed windows however they are aligned. Background work (refreshes,
warming) may use only ``background_share`` of it: interactive misses, which
a caller is waiting for, come first.

With Redis the window is one sorted set for the cluster. If Redis is
unreachable each replica falls back to its share, ``limit`` divided by the
replicas last seen alive (each replica heartbeats into a second sorted set).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Protocol

from redis.exceptions import RedisError

from availability.clock import Clock
from availability.slots import Slot
from availability.upstream import EventTypeInfo, Upstream, UpstreamUnavailable

__all__ = [
    "Budget",
    "BudgetExhausted",
    "BudgetedUpstream",
    "LocalBudget",
    "Priority",
    "RedisBudget",
]

logger = logging.getLogger(__name__)

_WINDOW = 60.0


class BudgetExhausted(UpstreamUnavailable):
    """No Cal.com call may be made now without exceeding the shared rate limit."""


class Priority(enum.IntEnum):
    INTERACTIVE = 0
    BACKGROUND = 1


class Budget(Protocol):
    limit: int

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        """Take one call from the budget; False if none is left."""
        ...

    async def close(self) -> None: ...


def _allowed(limit: int, priority: Priority, background_share: float) -> int:
    return limit if priority is Priority.INTERACTIVE else int(limit * background_share)


class LocalBudget:
    """A sliding window in this process (one replica, or a replica cut off from Redis)."""

    def __init__(self, limit: int, *, clock: Clock, background_share: float = 0.8) -> None:
        self.limit = limit
        self._clock = clock
        self._background_share = background_share
        self._taken: deque[float] = deque()

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        now = self._clock()
        while self._taken and self._taken[0] <= now - _WINDOW:
            self._taken.popleft()
        if len(self._taken) >= _allowed(self.limit, priority, self._background_share):
            return False
        self._taken.append(now)
        return True

    async def close(self) -> None:
        return None


# KEYS[1]: the window; ARGV: now (ms), window (ms), allowed, member.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1]: the replica set; ARGV: now (ms), liveness (ms), this replica.
_HEARTBEAT = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
"""


class RedisBudget:
    """The cluster's sliding window, in Redis."""

    def __init__(
        self,
        client: Any,
        limit: int,
        *,
        clock: Clock,
        prefix: str = "av1",
        background_share: float = 0.8,
        heartbeat_every: float = 10.0,
    ) -> None:
        self.limit = limit
        self._client = client
        self._clock = clock
        self._window_key = f"{prefix}:budget"
        self._replicas_key = f"{prefix}:replicas"
        self._background_share = background_share
        self._heartbeat_every = heartbeat_every
        self._me = secrets.token_hex(8)
        self._replicas = 1
        self._fallback = LocalBudget(limit, clock=clock, background_share=background_share)
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._beat()
        self._heartbeat = asyncio.create_task(self._beat_forever())

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        now_ms = int(self._clock() * 1000)
        allowed = _allowed(self.limit, priority, self._background_share)
        member = f"{now_ms}:{secrets.token_hex(6)}"
        try:
            return bool(
                await self._client.eval(
                    _TAKE, 1, self._window_key, now_ms, int(_WINDOW * 1000), allowed, member
                )
            )
        except (RedisError, OSError) as exc:
            logger.debug("budget in Redis unavailable (%s): using this replica's share", exc)
            self._fallback.limit = max(1, self.limit // self._replicas)
            return await self._fallback.acquire(priority)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_every)
            await self._beat()

    async def _beat(self) -> None:
        liveness = int(self._heartbeat_every * 3 * 1000)
        try:
            count = await self._client.eval(
                _HEARTBEAT, 1, self._replicas_key, int(self._clock() * 1000), liveness, self._me
            )
        except (RedisError, OSError):
            return  # keep the last count: it sizes this replica's share while cut off
        self._replicas = max(1, int(count))


class BudgetedUpstream:
    """An :class:`Upstream` that spends one unit of the budget per call."""

    def __init__(self, upstream: Upstream, budget: Budget) -> None:
        self._upstream = upstream
        self._budget = budget

    async def _spend(self) -> None:
        if not await self._budget.acquire(Priority.INTERACTIVE):
            raise BudgetExhausted(
                f"the Cal.com call budget ({self._budget.limit}/min, shared by all replicas) "
                "is spent; retry shortly"
            )

    async def fetch_slots(
        self,
        event_type_id: int,
        first_day: date,
        last_day: date,
        *,
        duration_minutes: int = 0,
        timeout: float | None = None,
    ) -> Mapping[date, Sequence[Slot]]:
        await self._spend()
        return await self._upstream.fetch_slots(
            event_type_id, first_day, last_day, duration_minutes=duration_minutes, timeout=timeout
        )

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        await self._spend()
        return await self._upstream.fetch_event_type(event_type_id, timeout=timeout)
