"""Choose the cache store and the Cal.com budget from ``AVAILABILITY_CACHE_URL``.

``memory://``: one process's memory (aiocache ``SimpleMemoryCache``) and a
budget of its own. ``redis://`` / ``rediss://`` (TLS), with ``user:password@``
for ACL users and ``/db``: buckets and versions in Redis, shared by every
replica, a bounded local tier in front, cluster-wide fetch leases and one
cluster-wide Cal.com budget.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from availability.budget import Budget, LocalBudget, RedisBudget
from availability.clock import Clock
from availability.redis_store import RedisStore
from availability.store import CacheStore, memory_store
from availability.tiered_store import TieredStore

__all__ = ["CacheBackend", "open_cache_backend"]


@dataclass(frozen=True, slots=True)
class CacheBackend:
    store: CacheStore
    budget: Budget
    tiered: TieredStore | None
    """The Redis-backed store, when there is one (it knows whether Redis is reachable)."""

    @property
    def degraded(self) -> bool:
        return self.tiered is not None and self.tiered.degraded


@contextlib.asynccontextmanager
async def open_cache_backend(
    cache_url: str,
    *,
    clock: Clock,
    rate_limit: int,
    prefix: str = "av1",
    max_local_buckets: int = 10_000,
) -> AsyncIterator[CacheBackend]:
    async with contextlib.AsyncExitStack() as stack:
        if urlsplit(cache_url).scheme == "memory":
            store = memory_store()
            stack.push_async_callback(store.close)
            budget = LocalBudget(rate_limit, clock=clock)
            yield CacheBackend(store, budget, None)
            return
        shared = RedisStore.from_url(cache_url)
        tiered = TieredStore(shared, clock=clock, max_local_buckets=max_local_buckets)
        await tiered.start()
        stack.push_async_callback(tiered.close)
        redis_budget = RedisBudget(
            shared.client,
            rate_limit,
            clock=clock,
            prefix=prefix,
            redis_down=lambda: tiered.degraded,
        )
        await redis_budget.start()
        stack.push_async_callback(redis_budget.close)
        yield CacheBackend(tiered, redis_budget, tiered)
