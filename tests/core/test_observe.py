"""What the cache tells its observer: every bucket once by how it was had, every answer,
and measured staleness (a re-fetch of a bucket believed current that finds a change)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import InvalidationScope, SlotCache, Source
from availability.core.clock import ManualClock
from availability.core.observe import LookupResult
from availability.core.ports import UpstreamUnavailable
from availability.core.ttl import TieredTtl
from tests.core.test_cache import ET, at, query
from tests.helpers.fake_upstream import FakeUpstream

NEAR_TTL = 60
# Monday to Wednesday: three near days (the fixture's truth has slots on each).
MON_TO_WED = ("2026-11-23T00:00", "2026-11-26T00:00")


@dataclass
class Tally:
    """An observer that keeps every report, as the metrics adapter counts them."""

    by_result: Counter[LookupResult] = field(default_factory=Counter)
    answers: Counter[Source] = field(default_factory=Counter)
    ages: list[float] = field(default_factory=list)
    refreshes: Counter[bool] = field(default_factory=Counter)
    suspect_hits: int = 0

    def lookups(self, result: LookupResult, count: int) -> None:
        self.by_result[result] += count

    def answered(self, source: Source, age: float) -> None:
        self.answers[source] += 1
        self.ages.append(age)

    def refreshed(self, changed: bool, suspect_hits: int) -> None:
        self.refreshes[changed] += 1
        self.suspect_hits += suspect_hits


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, at("2026-11-23T09:00"), at("2026-11-24T09:00"), at("2026-11-25T09:00"))
    return fake


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def cache(upstream: FakeUpstream, clock: ManualClock, tally: Tally) -> SlotCache:
    return SlotCache(
        upstream, MemoryStore(), clock=clock, ttl=TieredTtl(), max_stale=120, observer=tally
    )


async def test_every_bucket_asked_is_one_lookup_by_how_it_was_had(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, tally: Tally
) -> None:
    await cache.get_slots(query(*MON_TO_WED))  # 3 days cold
    await cache.get_slots(query(*MON_TO_WED))  # 3 hits
    await cache.get_slots(query("2026-11-25T00:00", "2026-11-27T00:00"))  # Wed hit, Thu miss
    await cache.get_slots(query(*MON_TO_WED, fresh=True))  # 3 bypass
    assert tally.by_result == {"miss": 4, "hit": 4, "bypass": 3}

    # Two readers of one cold day: one fetches, the other joins its fetch.
    upstream.gate = asyncio.Event()
    both = asyncio.gather(
        cache.get_slots(query("2026-11-30T00:00", "2026-12-01T00:00")),
        cache.get_slots(query("2026-11-30T00:00", "2026-12-01T00:00")),
    )
    await upstream.started.wait()
    upstream.gate.set()
    await both
    assert tally.by_result["coalesced"] == 1
    assert tally.by_result["miss"] == 5

    # Cal.com down after the TTL: the expired days are served stale, each counted once.
    clock.advance(NEAR_TTL)
    upstream.fail_with = UpstreamUnavailable("down")
    stale = await cache.get_slots(query(*MON_TO_WED))
    assert stale.freshness.source is Source.STALE
    assert tally.by_result["stale"] == 3
    asked = 3 + 3 + 2 + 3 + 2 + 3
    assert sum(tally.by_result.values()) == asked


async def test_a_failed_read_still_counts_the_buckets_it_looked_up(
    cache: SlotCache, upstream: FakeUpstream, tally: Tally
) -> None:
    await cache.get_slots(query("2026-11-23T00:00", "2026-11-24T00:00"))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    upstream.fail_with = UpstreamUnavailable("down")
    with pytest.raises(UpstreamUnavailable):
        await cache.get_slots(query(*MON_TO_WED))  # Mon cached, Tue and Wed cannot be had
    assert tally.by_result == {"miss": 3, "hit": 1}
    assert tally.answers == {Source.UPSTREAM: 1}  # the failed read is no answer


async def test_answers_by_source_with_the_age_of_the_oldest_bucket(
    cache: SlotCache, clock: ManualClock, tally: Tally
) -> None:
    await cache.get_slots(query(*MON_TO_WED))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    clock.advance(15)
    await cache.get_slots(query(*MON_TO_WED))
    await cache.get_slots(query("2026-11-01T00:00", "2026-11-02T00:00"))  # the past: no bucket
    assert tally.answers == {Source.UPSTREAM: 1, Source.CACHE: 1, Source.NONE: 1}
    assert tally.ages == [0.0, 15.0, 0.0]


async def test_an_unreported_booking_is_found_when_the_ttl_runs_out(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, tally: Tally
) -> None:
    await cache.get_slots(query(*MON_TO_WED))
    for _ in range(4):
        await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))  # Tuesday only
    upstream.remove(ET, at("2026-11-24T09:00"))  # booked, and nobody told the cache
    clock.advance(NEAR_TTL)
    await cache.get_slots(query(*MON_TO_WED))
    # Monday and Wednesday are as they were; Tuesday changed, and the 4 answers served
    # from its old bucket may each have offered the taken slot.
    assert tally.refreshes == {False: 2, True: 1}
    assert tally.suspect_hits == 4
    assert tally.by_result["miss"] == 6  # a refresh is a miss like any other


async def test_slots_that_merely_started_are_no_change(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, tally: Tally
) -> None:
    await cache.get_slots(query(*MON_TO_WED))
    clock.set(at("2026-11-23T09:00") + 1)  # Monday's slot has begun...
    upstream.remove(ET, at("2026-11-23T09:00"))  # ...so Cal.com no longer offers it
    await cache.get_slots(query(*MON_TO_WED))
    assert tally.refreshes == {False: 3}
    assert tally.suspect_hits == 0


async def test_an_invalidated_bucket_is_refetched_without_counting_a_refresh(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, tally: Tally
) -> None:
    await cache.get_slots(query(*MON_TO_WED))
    upstream.remove(ET, at("2026-11-24T09:00"))
    await cache.invalidate(InvalidationScope(ET))  # reported: not a staleness sample
    await cache.get_slots(query(*MON_TO_WED))
    clock.advance(NEAR_TTL)
    await cache.get_slots(query(*MON_TO_WED))  # expired, but nothing changed since
    assert tally.refreshes == {False: 3}


async def test_a_fresh_read_that_finds_the_cached_bucket_wrong_counts(
    cache: SlotCache, upstream: FakeUpstream, tally: Tally
) -> None:
    await cache.get_slots(query(*MON_TO_WED))
    await cache.get_slots(query(*MON_TO_WED))
    upstream.remove(ET, at("2026-11-25T09:00"))
    fresh = await cache.get_slots(query(*MON_TO_WED, fresh=True))
    assert at("2026-11-25T09:00") not in [s.start for d in fresh.days for s in d.slots]
    assert tally.refreshes == {False: 2, True: 1}
    assert tally.suspect_hits == 1  # the one hit on Wednesday's old bucket
    # The fresh read stored its buckets: their counts start again from nothing.
    await cache.get_slots(query(*MON_TO_WED, fresh=True))
    assert tally.refreshes == {False: 5, True: 1}
    assert tally.suspect_hits == 1


async def test_stale_answers_count_as_served_from_the_old_bucket(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, tally: Tally
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    clock.advance(NEAR_TTL)
    upstream.fail_with = UpstreamUnavailable("down")
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    upstream.fail_with = None
    upstream.remove(ET, at("2026-11-24T09:00"))
    clock.advance(1.0)  # past the failure memory, which served the second stale answer
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert tally.refreshes == {True: 1}
    assert tally.suspect_hits == 2
