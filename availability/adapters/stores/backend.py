"""Choose the cache store and the Cal.com budget from ``AVAILABILITY_CACHE_URL``.

``memory://``: one process's memory (a bounded dict, lazy expiry) and a
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

from availability.adapters.stores.local_budget import LocalBudget
from availability.adapters.stores.memory import MemoryStore
from availability.adapters.stores.redis_budget import RedisBudget
from availability.adapters.stores.redis_store import RedisStore
from availability.adapters.stores.tiered import TieredStore
from availability.core.clock import Clock
from availability.core.keys import KeySchema
from availability.core.ports import Budget, CacheStore

__all__ = ["CacheBackend", "open_cache_backend"]


@dataclass(frozen=True, slots=True)
class CacheBackend:
    store: CacheStore
    budget: Budget
    tiered: TieredStore | None
    """The Redis-backed store, when there is one (it knows whether Redis is reachable)."""


@contextlib.asynccontextmanager
async def open_cache_backend(
    cache_url: str,
    *,
    clock: Clock,
    rate_limit: int,
    keys: KeySchema,
    background_share: float = 0.8,
    max_local_buckets: int = 10_000,
    max_memory_entries: int = 1_000_000,
    trust: float = 0.0,
) -> AsyncIterator[CacheBackend]:
    async with contextlib.AsyncExitStack() as stack:
        if urlsplit(cache_url).scheme == "memory":
            store = MemoryStore(clock=clock, max_entries=max_memory_entries)
            stack.push_async_callback(store.close)
            local = LocalBudget(rate_limit, clock=clock, background_share=background_share)
            yield CacheBackend(store, local, None)
            return
        shared = RedisStore.from_url(cache_url)
        tiered = TieredStore(shared, clock=clock, max_local_buckets=max_local_buckets, trust=trust)
        await tiered.start()
        stack.push_async_callback(tiered.close)
        budget = RedisBudget(
            shared.client,
            rate_limit,
            clock=clock,
            keys=keys,
            redis_down=lambda: tiered.degraded,
            background_share=background_share,
        )
        await budget.start()
        stack.push_async_callback(budget.close)
        yield CacheBackend(tiered, budget, tiered)
