"""Whole windows per Cal.com call: the windows follow the clock, and a miss anywhere in
one fetches all of it in one call (see :mod:`availability.core.windows`)."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.ttl import TieredTtl
from availability.core.windows import FetchWindows
from tests.core.test_cache import ET, at, flat
from tests.helpers.fake_upstream import FakeUpstream

WINDOWS = FetchWindows(near_days=7, far_days=30)


def one_day(day: str) -> SlotsQuery:
    return SlotsQuery(ET, at(f"{day}T00:00"), at(f"{day}T00:00") + 86_400)


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(ET, *(at(f"2026-11-{d:02d}T09:00") for d in range(23, 31)))
    fake.add(ET, at("2026-12-10T09:00"), at("2027-01-20T09:00"))
    return fake


@pytest.fixture
def cache(upstream: FakeUpstream, clock: ManualClock) -> SlotCache:
    return SlotCache(
        upstream, MemoryStore(), clock=clock, ttl=TieredTtl(), max_stale=120, windows=WINDOWS
    )


def test_the_near_window_is_the_near_tier_and_the_far_one_reaches_far_days() -> None:
    now = at("2026-11-23T06:00")
    near = (date(2026, 11, 23), date(2026, 11, 30))  # the 30th starts within 7 days
    far = (date(2026, 12, 1), date(2026, 12, 23))  # the 23rd starts within 30 days
    assert WINDOWS.span(date(2026, 11, 23), now) == near
    assert WINDOWS.span(date(2026, 11, 30), now) == near
    assert WINDOWS.span(date(2026, 12, 1), now) == far
    assert WINDOWS.span(date(2026, 12, 23), now) == far
    assert WINDOWS.span(date(2026, 12, 24), now) is None
    assert WINDOWS.span(date(2026, 11, 22), now) is None
    # The windows move with the clock: at midnight the 30th starts exactly 7 days on.
    midnight = at("2026-11-23T00:00")
    assert WINDOWS.span(date(2026, 11, 23), midnight) == (date(2026, 11, 23), date(2026, 11, 29))
    assert FetchWindows(near_days=7, far_days=0).span(date(2026, 12, 1), now) is None


def test_the_near_window_agrees_with_the_near_tier() -> None:
    ttl, now = TieredTtl(), at("2026-11-23T06:00")
    span = WINDOWS.span(date(2026, 11, 23), now)
    assert span is not None
    _, last = span
    assert ttl.ttl(last, 1, now) == ttl.near
    assert ttl.ttl(date.fromordinal(last.toordinal() + 1), 1, now) == ttl.far


async def test_one_day_read_fetches_its_whole_window_in_one_call(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    answer = await cache.get_slots(one_day("2026-11-25"))
    assert flat(answer) == [at("2026-11-25T09:00")]
    await cache.idle()
    [call] = upstream.calls
    assert (call.first_day, call.last_day) == (date(2026, 11, 23), date(2026, 11, 30))
    # Every other day of the week is now a hit, without another call.
    for day in ("2026-11-23", "2026-11-27", "2026-11-30"):
        hit = await cache.get_slots(one_day(day))
        assert hit.freshness.source is Source.CACHE
    assert len(upstream.calls) == 1


async def test_a_far_day_fetches_the_far_window_and_past_it_only_the_day(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(one_day("2026-12-10"))
    await cache.get_slots(one_day("2027-01-20"))
    await cache.idle()
    assert [(c.first_day, c.last_day) for c in upstream.calls] == [
        (date(2026, 12, 1), date(2026, 12, 23)),
        (date(2027, 1, 20), date(2027, 1, 20)),
    ]
    assert (await cache.get_slots(one_day("2026-12-20"))).freshness.source is Source.CACHE


async def test_a_miss_in_a_cached_window_refetches_it_whole_in_one_call(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(one_day("2026-11-25"))
    await cache.idle()
    upstream.remove(ET, at("2026-11-27T09:00"))
    await cache.invalidate(
        InvalidationScope(ET, start=at("2026-11-27T09:00"), end=at("2026-11-27T09:30"))
    )
    assert flat(await cache.get_slots(one_day("2026-11-27"))) == []
    await cache.idle()
    # One call for the window, not one per gap around the still-cached days.
    assert [(c.first_day, c.last_day) for c in upstream.calls][1:] == [
        (date(2026, 11, 23), date(2026, 11, 30))
    ]


async def test_the_caller_waits_only_for_its_own_days(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(one_day("2026-11-24"))  # hosts learnt, the week cached
    await cache.idle()
    await cache.invalidate(InvalidationScope(ET))
    upstream.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_slots(one_day("2026-11-24")))
    await upstream.started.wait()
    # A reader of another day of the window joins the window's fetch instead of calling.
    other = asyncio.create_task(cache.get_slots(one_day("2026-11-29")))
    await asyncio.sleep(0)
    upstream.gate.set()
    assert flat(await first) == [at("2026-11-24T09:00")]
    assert flat(await other) == [at("2026-11-29T09:00")]
    assert len(upstream.calls) == 2


async def test_without_windows_only_the_days_read_are_fetched(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = SlotCache(upstream, MemoryStore(), clock=clock, ttl=TieredTtl())
    await cache.get_slots(one_day("2026-11-25"))
    await cache.idle()
    assert [(c.first_day, c.last_day) for c in upstream.calls] == [
        (date(2026, 11, 25), date(2026, 11, 25))
    ]
