"""Refresh-ahead: a bucket read in the last share of its TTL is refreshed in the
background, on the budget's background share, so a hot key never makes a caller wait;
a cold key simply expires (see :meth:`availability.core.cache.SlotCache._refresh_ahead_of`)."""

from __future__ import annotations

import pytest

from availability.adapters.stores.local_budget import LocalBudget
from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.ports import Priority
from availability.core.ttl import TieredTtl
from availability.resilience.budget import BudgetedUpstream
from tests.core.test_cache import ET, at, flat
from tests.helpers.fake_upstream import FakeUpstream

TTL = TieredTtl(empty=60, near=60, far=60)
AHEAD = 0.2  # the last 12 s of a 60 s TTL
DAY = SlotsQuery(ET, at("2026-11-24T00:00"), at("2026-11-25T00:00"))


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, at("2026-11-24T09:00"), at("2026-11-24T10:00"))
    return fake


def make(upstream: object, clock: ManualClock) -> SlotCache:
    return SlotCache(
        upstream,  # type: ignore[arg-type]
        MemoryStore(),
        clock=clock,
        ttl=TTL,
        refresh_ahead=AHEAD,
    )


async def warm(cache: SlotCache) -> None:
    await cache.get_slots(DAY)
    await cache.idle()


async def test_a_hot_key_is_refreshed_before_it_expires_and_never_waits(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = make(upstream, clock)
    await warm(cache)
    for _ in range(10):  # a read every 10 s, for 100 s: past the TTL
        clock.advance(10)
        answer = await cache.get_slots(DAY)
        assert answer.freshness.source is Source.CACHE
        await cache.idle()
    background = [c for c in upstream.calls if c.priority is Priority.BACKGROUND]
    assert len(upstream.calls) == 1 + len(background)
    assert len(background) >= 1
    assert cache.refreshes_ahead == len(background)


async def test_a_refresh_ahead_finds_the_unreported_change(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = make(upstream, clock)
    await warm(cache)
    upstream.remove(ET, at("2026-11-24T09:00"))  # nobody reports it
    clock.advance(50)  # inside the last 12 s
    assert at("2026-11-24T09:00") in flat(await cache.get_slots(DAY))  # still cached...
    await cache.idle()
    assert flat(await cache.get_slots(DAY)) == [at("2026-11-24T10:00")]  # ...then refreshed


async def test_a_cold_key_simply_expires(upstream: FakeUpstream, clock: ManualClock) -> None:
    cache = make(upstream, clock)
    await warm(cache)
    clock.advance(30)
    assert (await cache.get_slots(DAY)).freshness.source is Source.CACHE  # not yet due
    await cache.idle()
    clock.advance(40)  # expired, nobody read it in its last 12 s
    assert (await cache.get_slots(DAY)).freshness.source is Source.UPSTREAM
    assert cache.refreshes_ahead == 0


async def test_one_refresh_at_a_time_however_many_read(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = make(upstream, clock)
    await warm(cache)
    clock.advance(50)
    for _ in range(20):
        await cache.get_slots(DAY)
    await cache.idle()
    assert len(upstream.calls) == 2
    assert cache.refreshes_ahead == 1


async def test_the_fast_lane_stops_at_the_refresh_point(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = make(upstream, clock)
    await warm(cache)
    answer = await cache.get_slots(DAY)
    # Reused answers would never start the refresh: they are valid only until it is due.
    assert answer.valid_until == pytest.approx(clock() + 60 * (1 - AHEAD))


async def test_refreshes_use_only_the_background_share_and_a_refusal_is_not_a_failure(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    budget = LocalBudget(4, clock=clock, background_share=0.5)  # background: 2 of 4
    cache = make(BudgetedUpstream(upstream, budget), clock)
    await warm(cache)  # the slots and the hosts' look-up: 2 calls, the background share
    clock.advance(50)
    await cache.get_slots(DAY)  # due: the refresh asks, and is refused
    await cache.idle()
    assert len(upstream.calls) == 1
    assert cache.refreshes_ahead == 1
    clock.advance(11)  # expired now: an interactive miss still gets its call at once
    answer = await cache.get_slots(DAY)
    assert answer.freshness.source is Source.UPSTREAM
    assert [c.priority for c in upstream.calls] == [Priority.INTERACTIVE] * 2
