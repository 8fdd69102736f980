"""The cache core when the upstream misbehaves: deadlines, bounded stale, failure memory,
negative caching and load shedding, against an in-process upstream on the injected clock.

Deadlines are real time (the caller's); these tests use short ones (0.3 s) and a gate
that never opens, and assert outcomes, not durations.
"""

from __future__ import annotations

import asyncio

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.ports import (
    CircuitOpen,
    EventTypeNotFound,
    Overloaded,
    UpstreamAuthError,
    UpstreamUnavailable,
)
from tests.core.test_cache import ET, at, flat, query
from tests.helpers.fake_upstream import FakeUpstream

DAY = ("2026-11-24T00:00", "2026-11-25T00:00")
OTHER_DAY = ("2026-11-26T00:00", "2026-11-27T00:00")
UNKNOWN = 4242


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, at("2026-11-24T09:00"), at("2026-11-26T09:00"))
    return fake


def make_cache(upstream: FakeUpstream, clock: ManualClock, **kwargs: object) -> SlotCache:
    options: dict[str, object] = {"max_stale": 120, "fetch_timeout": 7.0} | kwargs
    return SlotCache(upstream, MemoryStore(), clock=clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def cache(upstream: FakeUpstream, clock: ManualClock) -> SlotCache:
    return make_cache(upstream, clock, stale_wait=0.05)


async def test_a_cold_read_gets_unavailable_by_its_deadline_and_the_fetch_goes_on(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate = asyncio.Event()
    with pytest.raises(UpstreamUnavailable, match="deadline"):
        await cache.get_slots(query(*DAY), timeout=0.3)
    # The fetch was the cache's, with its own bound, not the caller's 0.3 s...
    assert [c.timeout for c in upstream.calls] == [7.0]
    upstream.gate.set()
    # ...and it was not cancelled when the caller left: the next caller gets its bucket.
    later = await cache.get_slots(query(*DAY))
    assert flat(later) == [at("2026-11-24T09:00")]
    assert len(upstream.calls) == 1


async def test_a_stale_holder_waits_only_briefly_and_the_refresh_lands_in_the_background(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    fresh = await cache.get_slots(query(*DAY))
    clock.advance(61)  # past the near TTL, within max_stale
    upstream.gate = asyncio.Event()
    upstream.remove(ET, at("2026-11-24T09:00"))  # a change the refresh will see
    # A generous deadline: the stale wait (0.05 s), not the deadline, ends the wait.
    stale = await cache.get_slots(query(*DAY), timeout=30)
    assert stale.freshness.source is Source.STALE
    assert flat(stale) == flat(fresh)
    upstream.gate.set()
    await asyncio.gather(*cache._flights.tasks)  # the refresh finishes for nobody in particular
    after = await cache.get_slots(query(*DAY))
    assert after.freshness.source is Source.CACHE
    assert flat(after) == []
    assert len(upstream.calls) == 2


async def test_callers_joining_a_slow_refresh_share_it(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(query(*DAY))
    clock.advance(61)
    upstream.gate = asyncio.Event()
    answers = await asyncio.gather(*(cache.get_slots(query(*DAY), timeout=30) for _ in range(20)))
    assert {a.freshness.source for a in answers} == {Source.STALE}
    assert len(upstream.calls) == 2  # the first fetch and one refresh for all 20
    upstream.gate.set()


async def test_an_invalidated_bucket_is_not_served_while_its_refresh_is_slow(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(query(*DAY))
    await cache.invalidate(
        InvalidationScope(ET, start=at("2026-11-24T09:00"), end=at("2026-11-24T09:30"))
    )
    clock.advance(61)
    upstream.gate = asyncio.Event()
    with pytest.raises(UpstreamUnavailable, match="deadline"):
        await cache.get_slots(query(*DAY), timeout=0.3)
    upstream.gate.set()


async def test_a_failed_fetch_is_shared_for_a_second_then_tried_again(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(query(*OTHER_DAY))  # the event type's hosts are known
    upstream.fail_with = UpstreamUnavailable("Cal.com failed with HTTP 500")
    for _ in range(10):
        with pytest.raises(UpstreamUnavailable, match="500"):
            await cache.get_slots(query(*DAY))
    assert len(upstream.calls) == 2
    clock.advance(1)
    upstream.fail_with = None
    answer = await cache.get_slots(query(*DAY))
    assert answer.freshness.source is Source.UPSTREAM
    assert len(upstream.calls) == 3


async def test_a_failed_cold_fetch_is_shared_for_a_second_and_costs_no_look_up(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    upstream.fail_with = UpstreamUnavailable("Cal.com failed with HTTP 500")
    for _ in range(10):
        with pytest.raises(UpstreamUnavailable, match="500"):
            await cache.get_slots(query(*DAY))
    # The hosts are looked up only after the slots came: one failed call for all ten.
    assert (len(upstream.calls), upstream.event_type_calls) == (1, [])
    clock.advance(1)
    upstream.fail_with = None
    assert flat(await cache.get_slots(query(*DAY))) == [at("2026-11-24T09:00")]
    await cache.idle()
    assert (len(upstream.calls), upstream.event_type_calls) == (2, [ET])


async def test_a_failed_look_up_is_shared_for_a_second_too(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    upstream.event_type_error = UpstreamUnavailable("Cal.com failed with HTTP 500")
    for _ in range(3):
        await cache.get_slots(query(*DAY))  # answered from the slots; nothing stored
        await cache.idle()
    # Each cold read fetches again (nothing could be stored), but the failed look-up is
    # remembered: asked once for all three.
    assert (len(upstream.calls), upstream.event_type_calls) == (3, [ET])
    clock.advance(1)
    upstream.event_type_error = None
    await cache.get_slots(query(*DAY))
    await cache.idle()
    assert upstream.event_type_calls == [ET, ET]
    assert (await cache.get_slots(query(*DAY))).freshness.source is Source.CACHE


async def test_a_remembered_failure_serves_the_stale_bucket_without_calling(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(query(*DAY))
    clock.advance(61)
    upstream.fail_with = CircuitOpen("Cal.com has been failing")
    answers = [await cache.get_slots(query(*DAY)) for _ in range(5)]
    assert {a.freshness.source for a in answers} == {Source.STALE}
    assert len(upstream.calls) == 2


async def test_an_invalidation_is_never_answered_with_an_older_failure(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query(*OTHER_DAY))  # the event type's hosts are known
    upstream.fail_with = UpstreamUnavailable("Cal.com failed with HTTP 500")
    with pytest.raises(UpstreamUnavailable):
        await cache.get_slots(query(*DAY))
    upstream.fail_with = None
    await cache.invalidate(InvalidationScope(ET))  # a new stamp: the memory does not apply
    answer = await cache.get_slots(query(*DAY))
    assert answer.freshness.source is Source.UPSTREAM
    assert len(upstream.calls) == 3


async def test_fifty_asks_for_an_unknown_event_type_cost_one_look_up(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    unknown = SlotsQuery(UNKNOWN, at(DAY[0]), at(DAY[1]))
    for _ in range(50):
        with pytest.raises(EventTypeNotFound):
            await cache.get_slots(unknown)
    # The look-up and the slots fetch start together; whichever 404s first makes the id
    # unknown (the other may not even be made): at most one of each, for all fifty.
    assert len(upstream.calls) == 1
    assert upstream.event_type_calls in ([], [UNKNOWN])
    calls_then = len(upstream.event_type_calls)
    clock.advance(60)  # the negative entry's TTL
    with pytest.raises(EventTypeNotFound):
        await cache.get_slots(unknown)
    assert len(upstream.calls) == 2
    assert len(upstream.event_type_calls) <= calls_then + 1


async def test_a_404_from_the_slots_fetch_is_remembered_too(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.event_type_error = UpstreamAuthError("no API key")  # hosts unknown, slots asked
    unknown = SlotsQuery(UNKNOWN, at(DAY[0]), at(DAY[1]))
    for _ in range(50):
        with pytest.raises(EventTypeNotFound):
            await cache.get_slots(unknown)
    assert len(upstream.calls) == 1
    assert upstream.event_type_calls in ([], [UNKNOWN])


async def test_an_invalidation_naming_an_unknown_event_type_forgets_it(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    unknown = SlotsQuery(UNKNOWN, at(DAY[0]), at(DAY[1]))
    with pytest.raises(EventTypeNotFound):
        await cache.get_slots(unknown)
    upstream.add(UNKNOWN, at("2026-11-24T10:00"))  # the booking service created it
    with pytest.raises(EventTypeNotFound):
        await cache.get_slots(unknown)  # still remembered as unknown
    await cache.invalidate(InvalidationScope(UNKNOWN))
    answer = await cache.get_slots(unknown)
    assert flat(answer) == [at("2026-11-24T10:00")]


async def test_the_negative_entry_is_shared_through_the_store(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    store = MemoryStore()
    first, second = (SlotCache(upstream, store, clock=clock) for _ in range(2))
    unknown = SlotsQuery(UNKNOWN, at(DAY[0]), at(DAY[1]))
    with pytest.raises(EventTypeNotFound):
        await first.get_slots(unknown)
    with pytest.raises(EventTypeNotFound):
        await second.get_slots(unknown)  # another replica: it reads the record
    assert len(upstream.calls) == 1  # the first's 404 (its look-up may not have been made)
    assert upstream.event_type_calls in ([], [UNKNOWN])
    upstream.add(UNKNOWN, at("2026-11-24T10:00"))
    await second.invalidate(InvalidationScope(UNKNOWN))
    first._directory._local.clear()  # first's own copy aside, the store forgot it too
    assert flat(await first.get_slots(unknown)) == [at("2026-11-24T10:00")]


async def test_past_the_pending_limit_misses_are_shed_and_hits_and_stale_served(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = make_cache(upstream, clock, max_pending_misses=1, stale_wait=30)
    await cache.get_slots(query(*OTHER_DAY))  # cached: a hit later
    await cache.get_slots(query("2026-11-27T00:00", "2026-11-28T00:00"))
    clock.advance(31)  # the 27th (empty: 30 s TTL) is now stale; the 26th still fresh
    upstream.gate = asyncio.Event()
    upstream.started.clear()
    waiting = asyncio.create_task(cache.get_slots(query(*DAY), timeout=30))
    await upstream.started.wait()  # its reader is waiting by then
    assert cache.pending_misses == 1
    with pytest.raises(Overloaded, match="waiting"):
        await cache.get_slots(query("2026-11-25T00:00", "2026-11-26T00:00"))
    hit = await cache.get_slots(query(*OTHER_DAY))
    assert hit.freshness.source is Source.CACHE
    stale = await cache.get_slots(query("2026-11-27T00:00", "2026-11-28T00:00"))
    assert stale.freshness.source is Source.STALE
    assert cache.shed == 2
    upstream.gate.set()
    assert flat(await waiting) == [at("2026-11-24T09:00")]
    assert cache.pending_misses == 0


async def test_a_look_up_that_hangs_holds_no_reader_past_its_deadline(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    class SlowLookups(FakeUpstream):
        async def fetch_event_type(self, event_type_id: int, *, timeout: float | None = None):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()

    slow = SlowLookups()
    slow.truth = upstream.truth
    cache = make_cache(slow, clock)
    # The reader that began the fetch needs only the slots ...
    assert flat(await cache.get_slots(query(*DAY), timeout=0.3)) == [at("2026-11-24T09:00")]
    # ... a later one waits for the stamping, which needs the hosts: not past its deadline.
    with pytest.raises(UpstreamUnavailable, match="deadline"):
        await cache.get_slots(query(*DAY), timeout=0.3)
    await cache.close()  # cancels the look-up nobody waits for
