"""What the core tells a transport about reusing an answer: ``valid_until`` and ``generation``.

The promise under test: while the clock is before ``valid_until`` and the
generation has not moved, the same query gets the same days back.
"""

from __future__ import annotations

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import InvalidationScope, SlotCache, SlotsAnswer, Source
from availability.core.clock import ManualClock
from availability.core.ports import UpstreamUnavailable
from availability.core.ttl import TieredTtl
from tests.core.test_cache import ET, at, flat, query
from tests.helpers.fake_upstream import FakeUpstream

TTL = TieredTtl(empty=50, near=100, far=200)


def days_of(answer: SlotsAnswer) -> list[tuple[str, list[int]]]:
    return [(d.date, [s.start for s in d.slots]) for d in answer.days]


def make(upstream: FakeUpstream, clock: ManualClock, **options: float) -> SlotCache:
    return SlotCache(upstream, MemoryStore(clock=clock), clock=clock, ttl=TTL, **options)  # type: ignore[arg-type]


async def test_an_empty_day_in_range_bounds_the_answer_by_its_shorter_ttl(
    clock: ManualClock,
) -> None:
    upstream = FakeUpstream()
    upstream.add(ET, at("2026-11-24T09:00"))  # the 23rd stays empty
    cache = make(upstream, clock)
    q = query("2026-11-23T07:00", "2026-11-25T00:00")
    await cache.get_slots(q)
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    hit = await cache.get_slots(q)
    assert hit.freshness.source is Source.CACHE
    assert hit.valid_until == clock() + TTL.empty


async def test_the_first_slot_start_bounds_the_answer(clock: ManualClock) -> None:
    upstream = FakeUpstream()
    soon = int(clock()) + 20  # starts before any TTL runs out
    upstream.add(ET, soon, soon + 3600)
    cache = make(upstream, clock)
    q = query("2026-11-23T00:00", "2026-11-24T00:00")
    answer = await cache.get_slots(q)
    assert answer.valid_until == soon
    clock.set(soon + 1)
    assert flat(await cache.get_slots(q)) == [soon + 3600]  # the filter dropped it: rightly


async def test_utc_midnight_and_the_host_record_bound_the_answer(clock: ManualClock) -> None:
    upstream = FakeUpstream()
    upstream.add(ET, at("2026-11-24T09:00"))
    clock.set(at("2026-11-23T23:59:30"))  # the empty 23rd would expire at 00:00:20
    cache = make(upstream, clock)
    q = query("2026-11-23T00:00", "2026-11-26T00:00")
    assert (await cache.get_slots(q)).valid_until == at("2026-11-24T00:00")
    short = make(upstream, ManualClock(at("2026-11-23T06:00")), event_type_ttl=30)
    assert (await short.get_slots(q)).valid_until == at("2026-11-23T06:00") + 30


async def test_every_invalidation_moves_the_generation_even_a_failed_one(
    clock: ManualClock,
) -> None:
    upstream = FakeUpstream()
    upstream.add(ET, at("2026-11-24T09:00"))
    cache = make(upstream, clock)
    seen = cache.generation
    await cache.invalidate(InvalidationScope(host_ids=(7,)))
    assert cache.generation > seen
    seen = cache.generation
    await cache.invalidate(InvalidationScope(everything=True))
    assert cache.generation > seen
    seen = cache.generation
    upstream.event_type_error = UpstreamUnavailable("down")
    with pytest.raises(UpstreamUnavailable):
        await cache.invalidate(InvalidationScope(event_type_id=ET + 1))
    assert cache.generation > seen


@pytest.mark.parametrize("step", [7.0, 61.0, 599.0])
async def test_an_answer_holds_until_valid_until_and_only_the_generation_voids_it_sooner(
    clock: ManualClock, step: float
) -> None:
    upstream = FakeUpstream()
    base = at("2026-11-23T06:00")
    upstream.add(ET, *(base + i * 1800 for i in range(1, 200)))
    cache = make(upstream, clock, event_type_ttl=900)
    q = query("2026-11-23T00:00", "2026-11-27T00:00")
    for _ in range(60):
        answer = await cache.get_slots(q)
        generation = cache.generation
        clock.advance(step)
        again = await cache.get_slots(q)
        if clock() < answer.valid_until and cache.generation == generation:
            assert days_of(again) == days_of(answer)
        if not upstream.truth[ET]:
            break
        upstream.remove(ET, upstream.truth[ET][-1].start)  # unreported: TTLs catch it


async def test_a_fresh_read_that_replaces_valid_buckets_moves_the_generation(
    clock: ManualClock,
) -> None:
    upstream = FakeUpstream()
    upstream.add(ET, at("2026-11-24T09:00"), at("2026-11-24T10:00"))
    cache = make(upstream, clock)
    q = query("2026-11-24T00:00", "2026-11-25T00:00")
    await cache.get_slots(q)
    seen = cache.generation
    await cache.get_slots(q)
    assert cache.generation == seen  # a hit moves nothing
    upstream.remove(ET, at("2026-11-24T09:00"))
    fresh = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00", fresh=True))
    assert flat(fresh) == [at("2026-11-24T10:00")]
    assert cache.generation > seen
