"""The Cal.com call budget of the whole cluster: one sliding window in Redis.

Every replica takes its calls from one sorted set (a Lua script trims and
counts it atomically), so N replicas together never exceed the limit. If
Redis is unreachable each replica falls back to its share, ``limit`` divided
by the replicas last seen alive (each replica heartbeats into a second
sorted set). A Cal.com 429 pauses the whole cluster through a key with a TTL.
See :mod:`availability.resilience.budget` for how calls spend it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from availability.adapters.stores.local_budget import LocalBudget, allowed_calls
from availability.adapters.stores.redis_store import REDIS_ERRORS
from availability.core.clock import Clock
from availability.core.keys import KeySchema
from availability.core.ports import BUDGET_WINDOW, Priority

__all__ = ["RedisBudget"]

logger = logging.getLogger(__name__)


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
        keys: KeySchema,
        background_share: float = 0.8,
        heartbeat_every: float = 10.0,
        window: float = BUDGET_WINDOW,
        redis_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self.limit = limit
        self._client = client
        self._clock = clock
        self._window_key = keys.budget_window()
        self._pause_key = keys.budget_pause()
        self._window = window
        self._replicas_key = keys.replicas()
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
        allowed = allowed_calls(self.limit, priority, self._background_share)
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
        except REDIS_ERRORS as exc:
            logger.debug("budget in Redis unavailable (%s): using this replica's share", exc)
            return await self._local_share(priority)

    async def _local_share(self, priority: Priority) -> bool:
        self._fallback.limit = max(1, self.limit // self._replicas)
        return await self._fallback.acquire(priority)

    async def in_window(self) -> int:
        """The cluster's calls in the window; this replica's own while Redis is away."""
        if self._redis_down():
            return self._fallback.used
        now_ms = int(self._clock() * 1000)
        try:
            taken = await self._client.zcount(
                self._window_key, now_ms - int(self._window * 1000), "+inf"
            )
        except REDIS_ERRORS:
            return self._fallback.used
        return int(taken)

    async def pause(self, seconds: float) -> None:
        await self._fallback.pause(seconds)
        with contextlib.suppress(*REDIS_ERRORS):
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
        except REDIS_ERRORS:
            return  # keep the last count: it sizes this replica's share while cut off
        self._replicas = max(1, int(count))
