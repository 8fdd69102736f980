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

    async def warm(self, trust: float) -> tuple[SlotCache, TieredStore, ManualClock]:
        """A replica on a virtual monotonic clock (at 100.0) that has read DAY once and
        stored it: its versions confirmed at 100.0."""
        monotonic = ManualClock(100.0)
        cache = self.replica(trust=trust, monotonic=monotonic)
        await cache.get_slots(DAY)
        await cache.idle()
        return cache, self.stores[-1], monotonic


@pytest.fixture
async def group(
    redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> AsyncIterator[Replicas]:
    """Replicas on the test's Redis, closed when the test ends."""
    replicas = Replicas(redis.url(), upstream, clock)
    async with replicas.stack:
        yield replicas


async def test_within_trust_a_hit_asks_nothing_of_redis_even_a_frozen_one(
    group: Replicas, redis: RedisServer
) -> None:
    a, store, monotonic = await group.warm(trust=0.05)
    trusted = store.trusted_reads
    with redis.frozen():
        monotonic.advance(0.024)  # the window's first half: nothing at all is sent
        hit = await asyncio.wait_for(a.get_slots(DAY), 5)
        assert hit.freshness.source is Source.CACHE
        assert (store.trusted_reads, store.reconfirmations) == (trusted + 1, 0)
        monotonic.advance(0.025)  # its second half: a renewal goes out, the hit waits for none
        hit = await asyncio.wait_for(a.get_slots(DAY), 5)
        assert hit.freshness.source is Source.CACHE
        assert (store.trusted_reads, store.reconfirmations) == (trusted + 2, 1)
        await asyncio.wait_for(a.get_slots(DAY), 5)
        assert store.reconfirmations == 1  # one renewal in flight per key, not one per hit
        assert not store.degraded  # no read has asked Redis
        monotonic.advance(0.001)  # the window has closed (the renewal hangs): ask Redis
        await asyncio.wait_for(a.get_slots(DAY), 5)
        assert store.trusted_reads == trusted + 3
        assert store.degraded  # and found it hung


async def test_a_steadily_read_key_renews_its_window_before_it_closes(
    group: Replicas, redis: RedisServer
) -> None:
    a, store, monotonic = await group.warm(trust=0.05)
    trusted = store.trusted_reads
    for _ in range(10):  # six windows' worth of reads, 30 ms apart
        monotonic.advance(0.03)
        await a.get_slots(DAY)
        await store.idle()  # its renewal has landed
    # Each read fell in its window's second half: trusted, and it renewed the window.
    assert (store.trusted_reads, store.reconfirmations) == (trusted + 10, 10)
    trusted = store.trusted_reads
    with redis.frozen():  # so a read that asked Redis would show (degraded)
        monotonic.advance(0.03)
        hit = await asyncio.wait_for(a.get_slots(DAY), 5)
    assert hit.freshness.source is Source.CACHE
    assert store.trusted_reads == trusted + 1
    assert not store.degraded


async def test_a_renewal_that_finds_a_bump_ends_the_trust(
    group: Replicas, upstream: FakeUpstream
) -> None:
    a, store, monotonic = await group.warm(trust=0.05)
    b = group.replica(trust=0.05)
    assert BOOKED in flat(await a.get_slots(DAY))
    upstream.remove(ET, BOOKED)
    await b.invalidate(InvalidationScope(ET, start=BOOKED, end=BOOKED + 1800))
    # A's window runs on a virtual clock that stood still meanwhile, so this read is
    # still trusted; the renewal it sends reads the bumped versions.
    monotonic.advance(0.03)
    await a.get_slots(DAY)
    await store.idle()
    assert store.reconfirmations == 1
    trusted = store.trusted_reads
    after = await a.get_slots(DAY)
    assert store.trusted_reads == trusted  # the old copy is no longer trusted
    assert BOOKED not in flat(after)


async def test_after_an_invalidation_returns_no_replica_serves_what_it_trusted(
    group: Replicas, upstream: FakeUpstream
) -> None:
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
    group: Replicas, redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
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


async def test_trust_zero_asks_redis_on_every_read(group: Replicas) -> None:
    a = group.replica(trust=0.0)
    for _ in range(3):
        await a.get_slots(DAY)
    assert group.stores[0].trusted_reads == 0
