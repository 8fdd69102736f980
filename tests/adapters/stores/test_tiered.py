"""Replicas sharing one Redis, in one process: each a SlotCache over its own TieredStore.

Redis is real (database 11 of the machine's, or a private redis-server that a
test stops and starts); the upstream is the in-process fake, so fetches can
be counted and held.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from availability.adapters.stores.redis_store import RedisStore
from availability.adapters.stores.tiered import TieredStore
from availability.core.cache import SKEW_MARGIN, InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.observe import NO_OBSERVER, CacheObserver
from tests.core.test_cache import ET, at, flat
from tests.core.test_observe import Tally
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.redis_db import flushed_url
from tests.helpers.replicas import RedisServer

DB = 11
DAY = SlotsQuery(ET, at("2026-11-24T00:00"), at("2026-11-25T00:00"))
BOOKED = at("2026-11-24T09:00")


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, BOOKED, at("2026-11-24T14:00"))
    fake.hosts[ET] = frozenset({1})
    return fake


class Cluster:
    def __init__(self, url: str, upstream: FakeUpstream, clock: ManualClock) -> None:
        self.url = url
        self.upstream = upstream
        self.clock = clock
        self.stores: list[TieredStore] = []
        self.stack = AsyncExitStack()

    def replica(
        self, max_local_buckets: int = 100, observer: CacheObserver = NO_OBSERVER
    ) -> SlotCache:
        store = TieredStore(
            RedisStore.from_url(self.url), clock=self.clock, max_local_buckets=max_local_buckets
        )
        self.stores.append(store)
        self.stack.push_async_callback(store.close)
        return SlotCache(self.upstream, store, clock=self.clock, lease_ttl=2.0, observer=observer)


@pytest.fixture
async def cluster(upstream: FakeUpstream, clock: ManualClock) -> AsyncIterator[Cluster]:
    group = Cluster(flushed_url(DB), upstream, clock)
    async with group.stack:
        yield group
    flushed_url(DB)


async def test_a_read_on_one_replica_is_a_hit_on_another(cluster: Cluster) -> None:
    a, b = cluster.replica(), cluster.replica()
    first = await a.get_slots(DAY)
    await a.idle()  # the hosts are learnt after the first answer, and the bucket stored
    second = await b.get_slots(DAY)  # through Redis: B's local tier is empty
    third = await b.get_slots(DAY)  # now from B's local tier
    assert first.freshness.source is Source.UPSTREAM
    assert second.freshness.source is third.freshness.source is Source.CACHE
    assert flat(first) == flat(second) == flat(third)
    assert len(cluster.upstream.calls) == 1


async def test_invalidation_on_any_replica_reaches_every_local_tier(cluster: Cluster) -> None:
    a, b, c = cluster.replica(), cluster.replica(), cluster.replica()
    await a.get_slots(DAY)
    await b.get_slots(DAY)
    await b.get_slots(DAY)  # B holds the bucket locally
    cluster.upstream.remove(ET, BOOKED)
    await c.invalidate(InvalidationScope(ET, start=BOOKED, end=BOOKED + 1800))
    assert BOOKED not in flat(await a.get_slots(DAY))
    assert BOOKED not in flat(await b.get_slots(DAY))
    assert len(cluster.upstream.calls) == 2  # one refetch, shared through Redis


async def test_local_copy_past_its_ttl_is_replaced_by_a_fresher_shared_one(
    cluster: Cluster, clock: ManualClock
) -> None:
    a, b = cluster.replica(), cluster.replica()
    await a.get_slots(DAY)
    await b.get_slots(DAY)
    clock.advance(61)
    await a.get_slots(DAY)  # A refreshes Redis
    refreshed = await b.get_slots(DAY)  # B's local copy is expired: it must take A's, not fetch
    assert refreshed.freshness.source is Source.CACHE
    assert len(cluster.upstream.calls) == 2


async def test_local_tier_is_bounded(cluster: Cluster) -> None:
    a = cluster.replica(max_local_buckets=2)
    await a.get_slots(SlotsQuery(ET, at("2026-11-24T00:00"), at("2026-11-27T00:00")))
    await a.idle()
    assert len(cluster.stores[0]._buckets) == 2


async def test_concurrent_cold_reads_on_two_replicas_cost_one_fetch(cluster: Cluster) -> None:
    a, b = cluster.replica(), cluster.replica()
    cluster.upstream.gate = asyncio.Event()
    first = asyncio.create_task(a.get_slots(DAY))
    await cluster.upstream.started.wait()  # A holds the lease and is fetching
    second = asyncio.create_task(b.get_slots(DAY))
    await asyncio.sleep(0.05)  # B polls for A's bucket meanwhile
    cluster.upstream.gate.set()
    results = await asyncio.gather(first, second)
    assert flat(results[0]) == flat(results[1])
    assert len(cluster.upstream.calls) == 1


async def test_a_replica_not_knowing_the_hosts_yet_waits_for_the_cold_fetch(
    cluster: Cluster,
) -> None:
    a, b = cluster.replica(), cluster.replica()
    cluster.upstream.gate, cluster.upstream.event_type_gate = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(a.get_slots(DAY))
    await cluster.upstream.started.wait()  # A holds the lease, fetching without hosts
    second = asyncio.create_task(b.get_slots(DAY))
    await asyncio.sleep(0.05)  # B finds A's lease (under the pre-stamp) and polls it
    cluster.upstream.gate.set()
    await first  # A began the fetch: the slots are its answer
    await cluster.upstream.event_type_started.wait()  # A's look-up follows, held: B waits
    assert not second.done()
    cluster.upstream.event_type_gate.set()
    results = [await first, await second]
    assert flat(results[0]) == flat(results[1])
    assert results[1].freshness.source is Source.UPSTREAM  # it waited for A's fetch
    assert (len(cluster.upstream.calls), cluster.upstream.event_type_calls) == (1, [ET])


async def test_a_replica_that_learnt_the_hosts_mid_fetch_waits_for_it(
    cluster: Cluster, clock: ManualClock
) -> None:
    a, b = cluster.replica(), cluster.replica()
    # The host's versions exist (an old invalidation): B could stamp and fetch on its own.
    await b.invalidate(InvalidationScope(host_ids=(1,)))
    clock.advance(2 * SKEW_MARGIN)
    cluster.upstream.gate = asyncio.Event()
    first = asyncio.create_task(a.get_slots(DAY))
    await cluster.upstream.started.wait()
    # B learns the hosts while A's fetch is in the air (as it would from A's look-up
    # landing in Redis just before A stamps; that window is too short to hold open).
    await b._directory.hosts(ET, wait=5.0)
    second = asyncio.create_task(b.get_slots(DAY))
    await asyncio.sleep(0.05)  # B has nothing to serve and finds A's lease: it waits
    cluster.upstream.gate.set()
    results = await asyncio.gather(first, second)
    assert flat(results[0]) == flat(results[1])
    assert results[1].freshness.source is Source.UPSTREAM  # it waited for A's fetch
    assert len(cluster.upstream.calls) == 1


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    async with RedisServer() as server:
        yield server


async def test_redis_outage_degrades_then_recovers_coherently(
    private_redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
    group = Cluster(private_redis.url(), upstream, clock)
    async with group.stack:
        a, b = group.replica(), group.replica()
        await a.get_slots(DAY)
        await b.get_slots(DAY)
        await private_redis.stop()

        cached = await a.get_slots(DAY)  # from A's local tier
        assert cached.freshness.source is Source.CACHE
        assert group.stores[0].degraded
        other = SlotsQuery(ET, at("2026-11-25T00:00"), at("2026-11-26T00:00"))
        assert (await b.get_slots(other)).freshness.source is Source.UPSTREAM

        upstream.remove(ET, BOOKED)
        await a.invalidate(InvalidationScope(ET, start=BOOKED, end=BOOKED + 1800))
        assert BOOKED not in flat(await a.get_slots(DAY))  # applied locally at once

        await private_redis.start()  # empty: Redis lost everything
        clock.advance(2)  # past the retry pause
        assert BOOKED not in flat(await b.get_slots(DAY))
        assert not group.stores[1].degraded
        assert BOOKED not in flat(await a.get_slots(DAY))
        assert not group.stores[0].degraded


async def test_invalidation_taken_while_cut_off_is_replayed_to_the_cluster(
    private_redis: RedisServer, upstream: FakeUpstream, clock: ManualClock
) -> None:
    group = Cluster(private_redis.url(), upstream, clock)
    async with group.stack:
        a, b = group.replica(), group.replica()
        await a.get_slots(DAY)
        await b.get_slots(DAY)
        # A alone is cut off (Redis keeps running for B): point A's client at a dead port.
        dead = RedisStore.from_url("redis://127.0.0.1:9/0")
        group.stores[0]._shared = dead
        upstream.remove(ET, BOOKED)
        await a.invalidate(InvalidationScope(ET, start=BOOKED, end=BOOKED + 1800))
        assert group.stores[0].degraded
        assert BOOKED in flat(await b.get_slots(DAY))  # B cannot know yet (TTL safety net)

        group.stores[0]._shared = RedisStore.from_url(private_redis.url())
        await dead.close()
        clock.advance(2)
        await a.get_slots(DAY)  # A reconnects and replays its invalidation first
        assert BOOKED not in flat(await b.get_slots(DAY))


async def test_the_local_tier_reports_its_size_and_evictions(cluster: Cluster) -> None:
    a = cluster.replica(max_local_buckets=2)
    await a.get_slots(SlotsQuery(ET, at("2026-11-24T00:00"), at("2026-11-27T00:00")))
    await a.idle()
    assert (cluster.stores[0].local_buckets, cluster.stores[0].local_evictions) == (2, 1)


async def test_an_unreported_booking_is_measured_through_redis(
    cluster: Cluster, clock: ManualClock
) -> None:
    """The local copy of an expired bucket is the one that counted its answers: a
    refresh over Redis still knows how many answers may have offered the taken slot."""
    tally = Tally()
    a = cluster.replica(observer=tally)
    await a.get_slots(DAY)
    for _ in range(3):
        await a.get_slots(DAY)
    cluster.upstream.remove(ET, BOOKED)  # nobody reports it
    clock.advance(60)
    await a.get_slots(DAY)
    assert tally.refreshes == {True: 1}
    assert tally.suspect_hits == 3
