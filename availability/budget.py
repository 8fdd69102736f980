"""The Cal.com call budget, shared by every replica.

Cal.com allows ``limit`` calls per minute per API key (120 by default) and
blocks the key for a minute past that; the whole fleet shares the key, so the
budget, not CPU, is the scarce resource. Every upstream call (slots and
event-type look-ups) takes one unit first; with none left the caller gets an
answer at once: a cached bucket if one is usable, else
:class:`BudgetExhausted`, never a call over budget.

The window slides (any ``WINDOW`` seconds hold at most ``limit`` calls), so it
stays under Cal.com's fixed windows however they are aligned. It is 62 s, not
60: a unit is taken before the call travels, and Cal.com counts arrivals, so
without a margin the 121st call can arrive 59.99 s after the first (measured).
If Cal.com answers 429 anyway (another client on the key, clock skew), the
whole cluster pauses until Cal.com's reset instead of spending its budget on
calls that can only be refused. Background work (refreshes, warming) may use
only ``background_share`` of it: interactive misses, which a caller is
waiting for, come first.

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
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any, Protocol

from redis.exceptions import RedisError

from availability.clock import Clock
from availability.slots import Slot
from availability.upstream import (
    EventTypeInfo,
    Upstream,
    UpstreamThrottled,
    UpstreamUnavailable,
)

__all__ = [
    "WINDOW",
    "Budget",
    "BudgetExhausted",
    "BudgetedUpstream",
    "LocalBudget",
    "Priority",
    "RedisBudget",
]

logger = logging.getLogger(__name__)

WINDOW = 62.0
"""Seconds of the sliding window: Cal.com's 60 s plus a margin for travel time."""
_CALCOM_BLOCK = 60.0
"""How long Cal.com blocks a key after a 429 when it does not say."""


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

    async def pause(self, seconds: float) -> None:
        """Take nothing for ``seconds`` (Cal.com has blocked the key)."""
        ...

    async def close(self) -> None: ...


def _allowed(limit: int, priority: Priority, background_share: float) -> int:
    return limit if priority is Priority.INTERACTIVE else int(limit * background_share)


class LocalBudget:
    """A sliding window in this process (one replica, or a replica cut off from Redis)."""

    def __init__(
        self,
        limit: int,
        *,
        clock: Clock,
        background_share: float = 0.8,
        window: float = WINDOW,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._background_share = background_share
        self._window = window
        self._taken: deque[float] = deque()
        self._paused_until = 0.0

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        now = self._clock()
        if now < self._paused_until:
            return False
        while self._taken and self._taken[0] <= now - self._window:
            self._taken.popleft()
        if len(self._taken) >= _allowed(self.limit, priority, self._background_share):
            return False
        self._taken.append(now)
        return True

    async def close(self) -> None:
        return None


# KEYS[1]: the window, KEYS[2]: the pause; ARGV: now (ms), window (ms), allowed, member.
_TAKE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
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
        window: float = WINDOW,
        redis_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self.limit = limit
        self._client = client
        self._clock = clock
        self._window_key = f"{prefix}:budget"
        self._pause_key = f"{prefix}:budget:pause"
        self._window = window
        self._replicas_key = f"{prefix}:replicas"
        self._background_share = background_share
        self._heartbeat_every = heartbeat_every
        self._me = secrets.token_hex(8)
        self._replicas = 1
        self._fallback = LocalBudget(
            limit, clock=clock, background_share=background_share, window=window
        )
        self._heartbeat: asyncio.Task[None] | None = None
        # The store already knows when Redis is down: don't pay its timeout per call here.
        self._redis_down = redis_down

    async def start(self) -> None:
        await self._beat()
        self._heartbeat = asyncio.create_task(self._beat_forever())

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        if self._redis_down():
            return await self._local_share(priority)
        now_ms = int(self._clock() * 1000)
        allowed = _allowed(self.limit, priority, self._background_share)
        member = f"{now_ms}:{secrets.token_hex(6)}"
        try:
            return bool(
                await self._client.eval(
                    _TAKE,
                    2,
                    self._window_key,
                    self._pause_key,
                    now_ms,
                    int(self._window * 1000),
                    allowed,
                    member,
                )
            )
        except (RedisError, OSError) as exc:
            logger.debug("budget in Redis unavailable (%s): using this replica's share", exc)
            return await self._local_share(priority)

    async def _local_share(self, priority: Priority) -> bool:
        self._fallback.limit = max(1, self.limit // self._replicas)
        return await self._fallback.acquire(priority)

    async def pause(self, seconds: float) -> None:
        await self._fallback.pause(seconds)
        with contextlib.suppress(RedisError, OSError):
            await self._client.set(self._pause_key, "1", px=max(1, int(seconds * 1000)))

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
        try:
            return await self._upstream.fetch_slots(
                event_type_id,
                first_day,
                last_day,
                duration_minutes=duration_minutes,
                timeout=timeout,
            )
        except UpstreamThrottled as exc:
            await self._throttled(exc)
            raise

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        await self._spend()
        try:
            return await self._upstream.fetch_event_type(event_type_id, timeout=timeout)
        except UpstreamThrottled as exc:
            await self._throttled(exc)
            raise

    async def _throttled(self, exc: UpstreamThrottled) -> None:
        pause = _CALCOM_BLOCK if exc.retry_after is None else exc.retry_after
        logger.warning("Cal.com throttled the key: no Cal.com calls for %.0f s", pause)
        await self._budget.pause(pause)
