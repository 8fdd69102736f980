"""Bounded trust: local copies served without a Redis round trip for at most ``trust``
after the read that confirmed them was sent; invalidations wait ``trust`` out.

Redis is a private redis-server each test starts (so it can be frozen or
restarted); the upstream is the in-process fake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from availability.adapters.stores.redis_store import RedisStore
from availability.adapters.stores.tiered import TieredStore
from availability.core.cache import InvalidationScope, SlotCache, Source
from availability.core.clock import ManualClock
from tests.adapters.stores.test_tiered import BOOKED, DAY
from tests.core.test_cache import ET, at, flat
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.replicas import RedisServer


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, BOOKED, at("2026-11-24T14:00"))
    fake.hosts[ET] = frozenset({1})
    return fake


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    async with RedisServer() as server:
        yield server


class Replicas:
    def __init__(self, url: str, upstream: FakeUpstream, clock: ManualClock) -> None:
        self.url, self.upstream, self.clock = url, upstream, clock
        self.stores: list[TieredStore] = []
        self.stack = AsyncExitStack()

    def replica(self, trust: float, monotonic: ManualClock | None = None) -> SlotCache:
        store = TieredStore(
            RedisStore.from_url(self.url),
            clock=self.clock,
            trust=trust,
            monotonic=time.monotonic if monotonic is None else monotonic,
        )
        self.stores.append(store)
        self.stack.push_async_callback(store.close)
        return SlotCache(self.upstream, store, clock=self.clock, lease_ttl=2.0)


async def test_within_trust_a_hit_asks_nothing_of_redis_even_a_frozen_one(
    redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
    monotonic = ManualClock(100.0)
    group = Replicas(redis.url(), upstream, clock)
    async with group.stack:
        a = group.replica(trust=0.05, monotonic=monotonic)
        await a.get_slots(DAY)
        await a.idle()  # fetched and stored; its versions confirmed at monotonic 100.0
        store = group.stores[0]
        trusted = store.trusted_reads
        redis.freeze()
        try:
            monotonic.advance(0.049)
            hit = await asyncio.wait_for(a.get_slots(DAY), 5)
            assert hit.freshness.source is Source.CACHE
            assert store.trusted_reads == trusted + 1
            assert not store.degraded  # Redis was never asked
            monotonic.advance(0.001)  # the window has closed: this read asks Redis
            await asyncio.wait_for(a.get_slots(DAY), 5)
            assert store.trusted_reads == trusted + 1
            assert store.degraded  # and found it hung
        finally:
            redis.thaw()


async def test_after_an_invalidation_returns_no_replica_serves_what_it_trusted(
    redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
    group = Replicas(redis.url(), upstream, clock)
    async with group.stack:
        # A long window on the real monotonic clock: without waiting it out, the
        # invalidation would return while B still trusts its copy.
        a, b = group.replica(trust=0.3), group.replica(trust=0.3)
        await a.get_slots(DAY)
        await b.get_slots(DAY)
        assert BOOKED in flat(await b.get_slots(DAY))  # confirmed: B now trusts its copy
        upstream.remove(ET, BOOKED)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await a.invalidate(InvalidationScope(ET, start=BOOKED, end=BOOKED + 1800))
        assert loop.time() - began >= 0.3
        after = await b.get_slots(DAY)
        assert BOOKED not in flat(after)
        assert BOOKED not in flat(await a.get_slots(DAY))


async def test_a_restarted_redis_and_then_an_invalidation_reach_a_trusting_replica(
    redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
    group = Replicas(redis.url(), upstream, clock)
    async with group.stack:
        a, b = group.replica(trust=0.3), group.replica(trust=0.3)
        await a.get_slots(DAY)
        await b.get_slots(DAY)
        await b.get_slots(DAY)
        await redis.stop()
        await redis.start()  # empty: every version lost
        clock.advance(2)  # past any retry pause
        upstream.remove(ET, BOOKED)
        await a.invalidate(InvalidationScope(ET, start=BOOKED, end=BOOKED + 1800))
        assert BOOKED not in flat(await b.get_slots(DAY))


async def test_trust_zero_asks_redis_on_every_read(
    redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
    group = Replicas(redis.url(), upstream, clock)
    async with group.stack:
        a = group.replica(trust=0.0)
        for _ in range(3):
            await a.get_slots(DAY)
        assert group.stores[0].trusted_reads == 0
