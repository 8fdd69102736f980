"""One Cal.com round trip per cold read: the host look-up runs beside the slots fetch,
and a host invalidated while both are in flight is never served (see the race argument
in :mod:`availability.core.cache`)."""

from __future__ import annotations

import asyncio

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import SKEW_MARGIN, InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.event_types import REFRESH_AHEAD
from tests.core.test_cache import ET, at, flat
from tests.helpers.fake_upstream import FakeUpstream

OTHER = 1002  # the same host's other event type
HOST = 1
BOOKED = at("2026-11-24T09:00")
DAY = ("2026-11-24T00:00", "2026-11-25T00:00")
HOSTS_TTL = 3600.0


def day(event_type_id: int = ET) -> SlotsQuery:
    return SlotsQuery(event_type_id, at(DAY[0]), at(DAY[1]))


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, BOOKED, at("2026-11-24T14:00"))
    fake.add(OTHER, BOOKED, length=3600)
    fake.hosts.update({ET: frozenset({HOST}), OTHER: frozenset({HOST})})
    return fake


@pytest.fixture
def cache(upstream: FakeUpstream, clock: ManualClock) -> SlotCache:
    return SlotCache(upstream, MemoryStore(), clock=clock, max_stale=120, event_type_ttl=HOSTS_TTL)


async def both_started(upstream: FakeUpstream) -> None:
    await upstream.started.wait()
    await upstream.event_type_started.wait()


async def test_a_never_seen_event_type_asks_for_hosts_and_slots_at_once(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate, upstream.event_type_gate = asyncio.Event(), asyncio.Event()
    read = asyncio.create_task(cache.get_slots(day()))
    # Both calls are in the air while neither may finish: they run concurrently.
    await asyncio.wait_for(both_started(upstream), 5)
    assert not read.done()
    upstream.gate.set()
    upstream.event_type_gate.set()
    assert flat(await read) == [BOOKED, at("2026-11-24T14:00")]
    # Stored under the stamp a reader knowing the hosts takes: the next read is a hit.
    again = await cache.get_slots(day())
    assert again.freshness.source is Source.CACHE
    assert (len(upstream.calls), upstream.event_type_calls) == (1, [ET])


async def test_readers_arriving_meanwhile_share_the_one_fetch(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_slots(day()))
    await both_started(upstream)
    await asyncio.sleep(0)  # the look-up has answered: later readers know the hosts
    later = [asyncio.create_task(cache.get_slots(day())) for _ in range(5)]
    await asyncio.sleep(0)
    upstream.gate.set()
    answers = await asyncio.gather(first, *later)
    assert {tuple(flat(a)) for a in answers} == {(BOOKED, at("2026-11-24T14:00"))}
    assert len(upstream.calls) == 1


@pytest.mark.parametrize("reported_via", ["host_ids", "the host's other event type"])
async def test_a_host_invalidated_during_the_cold_fetch_is_never_served(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, reported_via: str
) -> None:
    if reported_via != "host_ids":
        await cache.get_slots(day(OTHER))  # OTHER's hosts (and the host's versions) known
        clock.advance(2 * SKEW_MARGIN)
        upstream.started.clear()
        upstream.event_type_started.clear()
    upstream.gate = asyncio.Event()
    read = asyncio.create_task(cache.get_slots(day()))
    await both_started(upstream)  # the fetch took Cal.com's answer: BOOKED still free
    upstream.remove(ET, BOOKED)
    upstream.remove(OTHER, BOOKED)
    scope = (
        InvalidationScope(host_ids=(HOST,))
        if reported_via == "host_ids"
        else InvalidationScope(OTHER, start=BOOKED, end=BOOKED + 3600)
    )
    await cache.invalidate(scope)
    upstream.gate.set()
    calls_before = len(upstream.calls)
    answer = await read
    assert BOOKED not in flat(answer)  # not even to the reader that started the fetch
    assert len(upstream.calls) == calls_before + 1  # it was fetched again, under the full stamp
    assert BOOKED not in flat(await cache.get_slots(day()))


async def test_an_old_host_version_takes_the_concurrent_fetch(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(day(OTHER))
    await cache.invalidate(InvalidationScope(host_ids=(HOST,)))  # bumped, long before
    clock.advance(2 * SKEW_MARGIN)
    await cache.get_slots(day())
    assert (await cache.get_slots(day())).freshness.source is Source.CACHE
    assert [c.event_type_id for c in upstream.calls] == [OTHER, ET]


async def test_known_hosts_are_renewed_in_the_background_before_they_expire(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(day())
    clock.advance(HOSTS_TTL * (1 - REFRESH_AHEAD / 2))
    upstream.event_type_gate = asyncio.Event()
    upstream.event_type_started.clear()
    # The read does not wait for the renewal (its gate is shut)...
    assert flat(await cache.get_slots(day())) == [BOOKED, at("2026-11-24T14:00")]
    await asyncio.wait_for(upstream.event_type_started.wait(), 5)
    assert upstream.event_type_calls == [ET, ET]
    upstream.event_type_gate.set()
    clock.advance(HOSTS_TTL * REFRESH_AHEAD)  # past the first record's TTL
    await asyncio.sleep(0)
    # ...and the renewed record serves past the old one's end without another look-up.
    await cache.get_slots(day())
    assert upstream.event_type_calls == [ET, ET]
    await cache.close()
