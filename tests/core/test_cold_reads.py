"""One Cal.com round trip per cold read: the reader that begins a fetch without hosts is
answered from the slots alone, the host look-up follows off its path, and a host
invalidated meanwhile is never served to a reader that began after the invalidation
returned (see the race argument in :mod:`availability.core.cache`)."""

from __future__ import annotations

import asyncio

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import SKEW_MARGIN, InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.event_types import REFRESH_AHEAD
from availability.core.ports import EventTypeNotFound, UpstreamUnavailable
from tests.core.test_cache import ET, at, flat
from tests.helpers.fake_upstream import FakeUpstream

OTHER = 1002  # the same host's other event type
UNKNOWN = 1099  # Cal.com has no such event type
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


async def settle() -> None:
    """Let background work that needs no upstream answer run to its next await (for
    checks that something did *not* happen)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def until_waiting(cache: SlotCache, readers: int) -> None:
    """Until ``readers`` reads wait for Cal.com (they have joined or begun a fetch)."""
    for _ in range(10_000):
        if cache.pending_misses >= readers:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{cache.pending_misses} readers waiting, not {readers}")


async def test_a_never_seen_event_type_is_answered_from_its_slots_alone(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate, upstream.event_type_gate = asyncio.Event(), asyncio.Event()
    read = asyncio.create_task(cache.get_slots(day()))
    await asyncio.wait_for(upstream.started.wait(), 5)
    await settle()
    # The look-up waits for the slots: a 404 there would make it moot.
    assert not upstream.event_type_started.is_set()
    upstream.gate.set()
    # The look-up's gate is still shut: the reader did not wait for it.
    assert flat(await read) == [BOOKED, at("2026-11-24T14:00")]
    await asyncio.wait_for(upstream.event_type_started.wait(), 5)
    upstream.event_type_gate.set()
    await cache.get_slots(day())  # joins the stamping, or hits what it stored
    # Stored under the stamp a reader knowing the hosts takes: the next read is a hit.
    again = await cache.get_slots(day())
    assert again.freshness.source is Source.CACHE
    assert again.trusted_for > 0  # reusable, where the first answer was not
    assert (await read).trusted_for == 0
    assert (len(upstream.calls), upstream.event_type_calls) == (1, [ET])


async def test_an_unknown_event_type_costs_one_call_not_a_look_up_too(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    for _ in range(3):
        with pytest.raises(EventTypeNotFound):
            await cache.get_slots(day(UNKNOWN))
    assert (len(upstream.calls), upstream.event_type_calls) == (1, [])


async def test_readers_arriving_meanwhile_share_the_one_fetch(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate, upstream.event_type_gate = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(cache.get_slots(day()))
    await upstream.started.wait()
    during_slots = [asyncio.create_task(cache.get_slots(day())) for _ in range(3)]
    await until_waiting(cache, 4)
    upstream.gate.set()
    await asyncio.wait_for(upstream.event_type_started.wait(), 5)
    during_look_up = [asyncio.create_task(cache.get_slots(day())) for _ in range(3)]
    await asyncio.wait_for(first, 5)  # answered while the look-up is held
    await until_waiting(cache, 6)
    # Readers who joined after the fetch began wait for its stamping, not a new fetch.
    assert not any(t.done() for t in during_slots + during_look_up)
    upstream.event_type_gate.set()
    answers = await asyncio.gather(first, *during_slots, *during_look_up)
    assert {tuple(flat(a)) for a in answers} == {(BOOKED, at("2026-11-24T14:00"))}
    assert (len(upstream.calls), upstream.event_type_calls) == (1, [ET])


async def test_when_the_look_up_fails_later_readers_are_not_served_the_unjudged_answer(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate, upstream.event_type_gate = asyncio.Event(), asyncio.Event()
    upstream.event_type_error = UpstreamUnavailable("event types are down")
    first = asyncio.create_task(cache.get_slots(day()))
    await upstream.started.wait()
    joined = asyncio.create_task(cache.get_slots(day()))
    await until_waiting(cache, 2)
    upstream.gate.set()
    assert flat(await first) == [BOOKED, at("2026-11-24T14:00")]
    upstream.event_type_gate.set()
    with pytest.raises(UpstreamUnavailable):
        await joined
    # Nothing was stored under a stamp nobody could judge.
    upstream.event_type_error = None
    answer = await cache.get_slots(day())
    assert answer.freshness.source is Source.UPSTREAM
    assert len(upstream.calls) == 2


@pytest.mark.parametrize("reported_via", ["host_ids", "the host's other event type"])
async def test_a_host_invalidated_during_the_cold_fetch_is_never_served(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, reported_via: str
) -> None:
    if reported_via != "host_ids":
        await cache.get_slots(day(OTHER))  # OTHER's hosts (and the host's versions) known
        clock.advance(2 * SKEW_MARGIN)
        upstream.started.clear()
    upstream.gate = asyncio.Event()
    read = asyncio.create_task(cache.get_slots(day()))
    await upstream.started.wait()  # the fetch took Cal.com's answer: BOOKED still free
    upstream.remove(ET, BOOKED)
    upstream.remove(OTHER, BOOKED)
    scope = (
        InvalidationScope(host_ids=(HOST,))
        if reported_via == "host_ids"
        else InvalidationScope(OTHER, start=BOOKED, end=BOOKED + 3600)
    )
    await cache.invalidate(scope)
    # Begun after the invalidation returned; it knows no hosts either, so it joins.
    after = asyncio.create_task(cache.get_slots(day()))
    await until_waiting(cache, 2)
    calls_before = len(upstream.calls)
    upstream.gate.set()
    # The reader that began the fetch overlapped the invalidation: either answer is
    # linearizable for it, and it gets Cal.com's (BOOKED free when Cal.com answered).
    assert BOOKED in flat(await read)
    assert BOOKED not in flat(await after)  # never to a reader that began after it
    assert len(upstream.calls) == calls_before + 1  # fetched again, under the full stamp
    assert BOOKED not in flat(await cache.get_slots(day()))


async def test_an_old_host_version_takes_the_blind_fetch(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(day(OTHER))
    await cache.idle()  # OTHER's hosts learnt and its bucket stamped
    await cache.invalidate(InvalidationScope(host_ids=(HOST,)))  # bumped, long before
    clock.advance(2 * SKEW_MARGIN)
    await cache.get_slots(day())
    await cache.get_slots(day())  # joins the stamping, or hits what it stored
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
