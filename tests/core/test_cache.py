"""The cache core on an injected clock, against an in-process upstream."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import Invalidation, InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.keys import KeySchema
from availability.core.local_days import utc_days
from availability.core.ports import EventTypeNotFound, UpstreamUnavailable
from availability.core.ttl import TieredTtl
from tests.helpers.fake_upstream import FakeUpstream

ET = 1001


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def query(start: str, end: str, **kwargs: object) -> SlotsQuery:
    return SlotsQuery(ET, at(start), at(end), **kwargs)  # type: ignore[arg-type]


def starts(answer_days: list[tuple[str, list[int]]]) -> list[tuple[str, list[int]]]:
    return answer_days


def flat(answer: object) -> list[int]:
    return [slot.start for day in answer.days for slot in day.slots]  # type: ignore[attr-defined]


@pytest.fixture
def upstream() -> FakeUpstream:
    fake = FakeUpstream()
    fake.add(
        ET,
        at("2026-11-23T09:00"),
        at("2026-11-23T14:00"),
        at("2026-11-24T09:00"),
        at("2026-11-25T09:00"),
        at("2026-12-10T09:00"),
    )
    return fake


@pytest.fixture
def cache(upstream: FakeUpstream, clock: ManualClock) -> SlotCache:
    return SlotCache(upstream, MemoryStore(), clock=clock, ttl=TieredTtl(), max_stale=120)


async def test_cold_read_fetches_adjacent_days_in_one_call(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    answer = await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    assert flat(answer) == [
        at("2026-11-23T09:00"),
        at("2026-11-23T14:00"),
        at("2026-11-24T09:00"),
        at("2026-11-25T09:00"),
    ]
    assert [(c.first_day, c.last_day) for c in upstream.calls] == [
        (date(2026, 11, 23), date(2026, 11, 25))
    ]
    assert answer.freshness.source is Source.UPSTREAM


async def test_identical_and_sub_range_reads_are_hits(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    again = await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    sub = await cache.get_slots(query("2026-11-24T08:00", "2026-11-25T10:00"))
    assert len(upstream.calls) == 1
    assert again.freshness.source is Source.CACHE
    assert flat(sub) == [at("2026-11-24T09:00"), at("2026-11-25T09:00")]


async def test_an_answer_with_any_fetched_day_is_upstream_and_as_old_as_its_oldest_day(
    cache: SlotCache, clock: ManualClock
) -> None:
    cached_at = clock()
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    clock.advance(20)
    mixed = await cache.get_slots(query("2026-11-24T00:00", "2026-11-26T00:00"))
    assert mixed.freshness.source is Source.UPSTREAM  # the 25th was fetched for this call
    assert (mixed.freshness.fetched_at, mixed.freshness.age) == (cached_at, 20.0)
    hit = await cache.get_slots(query("2026-11-24T00:00", "2026-11-26T00:00"))
    assert hit.freshness.source is Source.CACHE


async def test_only_missing_days_are_fetched_in_adjacent_runs(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    await cache.get_slots(query("2026-11-26T00:00", "2026-11-27T00:00"))
    upstream.calls.clear()
    await cache.get_slots(query("2026-11-23T00:00", "2026-11-29T00:00"))
    assert sorted((c.first_day, c.last_day) for c in upstream.calls) == [
        (date(2026, 11, 23), date(2026, 11, 23)),
        (date(2026, 11, 25), date(2026, 11, 25)),
        (date(2026, 11, 27), date(2026, 11, 28)),
    ]


async def test_end_is_exclusive_and_started_slots_are_dropped(
    cache: SlotCache, clock: ManualClock
) -> None:
    answer = await cache.get_slots(query("2026-11-23T00:00", "2026-11-23T14:00"))
    assert flat(answer) == [at("2026-11-23T09:00")]
    clock.set(at("2026-11-23T09:00") + 1)
    answer = await cache.get_slots(query("2026-11-23T00:00", "2026-11-24T00:00"))
    assert flat(answer) == [at("2026-11-23T14:00")]


async def test_range_entirely_in_the_past_needs_no_upstream(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    answer = await cache.get_slots(query("2026-11-01T00:00", "2026-11-02T00:00"))
    assert answer.days == []
    assert answer.freshness.source is Source.NONE
    assert upstream.calls == []


@pytest.mark.parametrize(
    ("start", "end", "ttl"),
    [
        ("2026-11-24T00:00", "2026-11-25T00:00", 60),  # near: within 7 days
        ("2026-12-10T00:00", "2026-12-11T00:00", 300),  # far
        ("2026-11-28T00:00", "2026-11-29T00:00", 30),  # empty (a Saturday)
        ("2026-12-12T00:00", "2026-12-13T00:00", 30),  # empty and far: empty wins
    ],
)
async def test_each_ttl_tier_expires_on_the_clock(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock, start: str, end: str, ttl: int
) -> None:
    await cache.get_slots(query(start, end))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    clock.advance(ttl - 1)
    hit = await cache.get_slots(query(start, end))
    assert hit.freshness.source is Source.CACHE
    assert hit.freshness.age == pytest.approx(ttl - 1)
    assert len(upstream.calls) == 1
    clock.advance(1)
    miss = await cache.get_slots(query(start, end))
    assert miss.freshness.source is Source.UPSTREAM
    assert len(upstream.calls) == 2


async def test_configured_ttls_apply(upstream: FakeUpstream, clock: ManualClock) -> None:
    cache = SlotCache(upstream, MemoryStore(), clock=clock, ttl=TieredTtl(empty=5, near=10, far=20))
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    clock.advance(10)
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert len(upstream.calls) == 2


async def test_empty_answer_is_cached_and_empty(cache: SlotCache, upstream: FakeUpstream) -> None:
    first = await cache.get_slots(query("2026-11-28T00:00", "2026-11-30T00:00"))
    second = await cache.get_slots(query("2026-11-28T00:00", "2026-11-30T00:00"))
    assert first.days == second.days == []
    assert len(upstream.calls) == 1


async def test_invalidating_a_range_refetches_only_its_days(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    upstream.remove(ET, at("2026-11-24T09:00"))
    done = await cache.invalidate(
        InvalidationScope(ET, start=at("2026-11-24T09:00"), end=at("2026-11-24T09:30"))
    )
    assert done.dates == (date(2026, 11, 24),)
    upstream.calls.clear()

    answer = await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    assert at("2026-11-24T09:00") not in flat(answer)
    assert [(c.first_day, c.last_day) for c in upstream.calls] == [
        (date(2026, 11, 24), date(2026, 11, 24))
    ]
    await cache.get_slots(query("2026-11-25T00:00", "2026-11-26T00:00"))
    assert len(upstream.calls) == 1


async def test_invalidation_is_idempotent(cache: SlotCache, upstream: FakeUpstream) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    for _ in range(3):
        await cache.invalidate(
            InvalidationScope(ET, start=at("2026-11-24T09:00"), end=at("2026-11-24T09:30"))
        )
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert len(upstream.calls) == 2


async def test_invalidating_without_range_drops_every_day_of_the_event_type(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.add(2002, at("2026-11-24T10:00"))
    await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    await cache.get_slots(SlotsQuery(2002, at("2026-11-24T00:00"), at("2026-11-25T00:00")))
    done = await cache.invalidate(InvalidationScope(ET))
    assert done.all_dates
    upstream.calls.clear()
    await cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00"))
    await cache.get_slots(SlotsQuery(2002, at("2026-11-24T00:00"), at("2026-11-25T00:00")))
    assert [c.event_type_id for c in upstream.calls] == [ET]


async def test_durations_are_separate_buckets_sharing_invalidation(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00", duration_minutes=60))
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert [c.duration_minutes for c in upstream.calls] == [60, 0]
    await cache.invalidate(
        InvalidationScope(ET, start=at("2026-11-24T09:00"), end=at("2026-11-24T10:00"))
    )
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00", duration_minutes=60))
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert len(upstream.calls) == 4


async def test_fresh_read_skips_the_cache_and_refreshes_it(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    upstream.remove(ET, at("2026-11-24T09:00"))  # a change nobody reported
    fresh = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00", fresh=True))
    assert fresh.freshness.source is Source.UPSTREAM
    assert flat(fresh) == []
    cached = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert cached.freshness.source is Source.CACHE
    assert flat(cached) == []
    assert len(upstream.calls) == 2


async def test_expired_bucket_is_served_stale_while_upstream_is_down(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    upstream.fail_with = UpstreamUnavailable("Cal.com returned 503")
    clock.advance(60 + 100)  # past the 60 s TTL, within max_stale=120
    stale = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert stale.freshness.source is Source.STALE
    assert stale.freshness.age == pytest.approx(160)
    assert flat(stale) == [at("2026-11-24T09:00")]
    clock.advance(21)  # past TTL + max_stale
    with pytest.raises(UpstreamUnavailable):
        await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))


async def test_invalidated_bucket_is_never_served_stale(
    cache: SlotCache, upstream: FakeUpstream, clock: ManualClock
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    await cache.invalidate(
        InvalidationScope(ET, start=at("2026-11-24T09:00"), end=at("2026-11-24T09:30"))
    )
    upstream.fail_with = UpstreamUnavailable("Cal.com returned 503")
    clock.advance(61)
    with pytest.raises(UpstreamUnavailable):
        await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))


async def test_unknown_event_type_is_not_found(cache: SlotCache) -> None:
    with pytest.raises(EventTypeNotFound):
        await cache.get_slots(SlotsQuery(4242, at("2026-11-24T00:00"), at("2026-11-25T00:00")))


async def test_concurrent_cold_reads_share_one_fetch(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    upstream.gate = asyncio.Event()
    reads = [
        asyncio.create_task(cache.get_slots(query("2026-11-23T00:00", "2026-11-26T00:00")))
        for _ in range(50)
    ]
    # Overlapping ranges share the overlap and fetch only the rest.
    wider = asyncio.create_task(cache.get_slots(query("2026-11-23T00:00", "2026-11-28T00:00")))
    await upstream.started.wait()
    await asyncio.sleep(0)
    upstream.gate.set()
    answers = await asyncio.gather(*reads)
    await wider
    assert sorted((c.first_day, c.last_day) for c in upstream.calls) == [
        (date(2026, 11, 23), date(2026, 11, 25)),
        (date(2026, 11, 26), date(2026, 11, 27)),
    ]
    assert all(a.days == answers[0].days for a in answers)


async def test_fetch_in_flight_during_invalidation_is_not_served_afterwards(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    booked = at("2026-11-24T09:00")
    upstream.gate = asyncio.Event()
    before = asyncio.create_task(cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00")))
    await upstream.started.wait()  # the fetch read Cal.com's pre-booking answer

    upstream.remove(ET, booked)  # the booking lands in Cal.com...
    await cache.invalidate(
        InvalidationScope(ET, start=booked, end=booked + 1800)
    )  # ...and is reported
    after = asyncio.create_task(cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00")))
    await asyncio.sleep(0)
    upstream.gate.set()

    assert booked in flat(await before)  # began before the invalidation: may see the old answer
    assert booked not in flat(await after)  # began after: must not, and must not join the old fetch
    later = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert booked not in flat(later)
    assert len(upstream.calls) == 2


async def test_lost_versions_make_buckets_invalid_not_valid(
    upstream: FakeUpstream, clock: ManualClock
) -> None:
    store = MemoryStore()
    cache = SlotCache(upstream, store, clock=clock)
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    # Forget every version but keep the buckets (a store that lost some keys).
    raw = store._entries  # the store's dict
    for key in [k for k in raw if ":v" in k]:
        del raw[key]
    clock.advance(1)
    again = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert again.freshness.source is Source.UPSTREAM
    assert len(upstream.calls) == 2


async def test_days_are_regrouped_in_the_callers_time_zone(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    # 23:30 UTC on the 24th is already the 25th in Berlin: a range crossing midnight UTC.
    upstream.add(ET, at("2026-11-24T23:30"))
    answer = await cache.get_slots(
        query("2026-11-24T12:00", "2026-11-25T12:00", time_zone=ZoneInfo("Europe/Berlin"))
    )
    assert [(d.date, [s.start for s in d.slots]) for d in answer.days] == [
        ("2026-11-25", [at("2026-11-24T23:30"), at("2026-11-25T09:00")])
    ]
    utc = await cache.get_slots(query("2026-11-24T12:00", "2026-11-25T12:00"))
    assert [d.date for d in utc.days] == ["2026-11-24", "2026-11-25"]


# -- host-wide scopes -----------------------------------------------------------

ALICE_60 = 1002
BOB_30 = 2001


@pytest.fixture
def shared_host(upstream: FakeUpstream) -> FakeUpstream:
    """1001 and 1002 are alice's (host 1); 2001 is bob's (host 2)."""
    upstream.add(ALICE_60, at("2026-11-24T09:00"), at("2026-11-24T14:00"), length=3600)
    upstream.add(BOB_30, at("2026-11-24T15:00"))
    upstream.hosts.update({ET: frozenset({1}), ALICE_60: frozenset({1}), BOB_30: frozenset({2})})
    return upstream


def day_query(event_type_id: int) -> SlotsQuery:
    return SlotsQuery(event_type_id, at("2026-11-24T00:00"), at("2026-11-25T00:00"))


async def test_booking_one_event_type_invalidates_the_hosts_other_event_types(
    cache: SlotCache, shared_host: FakeUpstream
) -> None:
    for et in (ET, ALICE_60, BOB_30):
        await cache.get_slots(day_query(et))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    shared_host.remove(ALICE_60, at("2026-11-24T09:00"))  # alice's 09:00 is taken...
    done = await cache.invalidate(
        InvalidationScope(ET, start=at("2026-11-24T09:00"), end=at("2026-11-24T09:30"))
    )
    assert done.event_type_ids == (ET, ALICE_60)
    assert done.host_ids == (1,)
    shared_host.calls.clear()

    sixty = await cache.get_slots(day_query(ALICE_60))
    assert at("2026-11-24T09:00") not in flat(sixty)
    bob = await cache.get_slots(day_query(BOB_30))
    assert bob.freshness.source is Source.CACHE
    assert [c.event_type_id for c in shared_host.calls] == [ALICE_60]


async def test_host_and_everything_scopes(cache: SlotCache, shared_host: FakeUpstream) -> None:
    for et in (ET, ALICE_60, BOB_30):
        await cache.get_slots(day_query(et))
    await cache.idle()  # the hosts are learnt after the first answer: let that land
    shared_host.calls.clear()
    done = await cache.invalidate(InvalidationScope(host_ids=(2,)))
    assert done.all_dates
    assert done.event_type_ids == (BOB_30,)
    for et in (ET, ALICE_60, BOB_30):
        await cache.get_slots(day_query(et))
    assert [c.event_type_id for c in shared_host.calls] == [BOB_30]

    shared_host.calls.clear()
    assert (await cache.invalidate(InvalidationScope(everything=True))).everything
    for et in (ET, ALICE_60, BOB_30):
        await cache.get_slots(day_query(et))
    assert sorted(c.event_type_id for c in shared_host.calls) == [ET, ALICE_60, BOB_30]


async def test_invalidating_an_event_type_never_read_here_reaches_its_hosts_others(
    cache: SlotCache, shared_host: FakeUpstream
) -> None:
    await cache.get_slots(day_query(ET))
    await cache.invalidate(
        InvalidationScope(ALICE_60, start=at("2026-11-24T09:00"), end=at("2026-11-24T10:00"))
    )
    again = await cache.get_slots(day_query(ET))
    assert again.freshness.source is Source.UPSTREAM


async def test_invalidation_reports_failure_when_hosts_cannot_be_learned(
    cache: SlotCache, shared_host: FakeUpstream
) -> None:
    await cache.get_slots(day_query(ET))
    shared_host.fail_with = UpstreamUnavailable("Cal.com returned 503")
    with pytest.raises(UpstreamUnavailable):
        await cache.invalidate(
            InvalidationScope(ALICE_60, start=at("2026-11-24T09:00"), end=at("2026-11-24T10:00"))
        )


# -- the in-flight race, with a delete-on-invalidate cache as the control -------


class DeletingCache(SlotCache):
    """The naive design: invalidation deletes the day's buckets, versions never move."""

    def __init__(self, upstream: FakeUpstream, clock: ManualClock) -> None:
        self.store = MemoryStore()
        super().__init__(upstream, self.store, clock=clock)

    async def invalidate(
        self, scope: InvalidationScope, *, timeout: float | None = None
    ) -> Invalidation:
        assert scope.start is not None
        assert scope.end is not None
        days = utc_days(scope.start, scope.end)
        for day in days:
            self.store._entries.pop(KeySchema().bucket(ET, 0, day), None)
        return Invalidation((ET,), (), tuple(days), all_dates=False)


@pytest.mark.parametrize(
    "variant",
    [
        "versioned",
        pytest.param(
            "delete-on-invalidate",
            marks=pytest.mark.xfail(strict=True, reason="control: deleting keys loses the race"),
        ),
    ],
)
async def test_in_flight_race_control(
    variant: str, upstream: FakeUpstream, clock: ManualClock
) -> None:
    cache = (
        SlotCache(upstream, MemoryStore(), clock=clock)
        if variant == "versioned"
        else DeletingCache(upstream, clock)
    )
    booked = at("2026-11-24T09:00")
    upstream.gate = asyncio.Event()
    before = asyncio.create_task(cache.get_slots(day_query(ET)))
    await upstream.started.wait()
    upstream.remove(ET, booked)
    await cache.invalidate(InvalidationScope(ET, start=booked, end=booked + 1800))
    after = asyncio.create_task(cache.get_slots(day_query(ET)))
    await asyncio.sleep(0)
    upstream.gate.set()
    await before
    assert booked not in flat(await after)
    assert booked not in flat(await cache.get_slots(day_query(ET)))


async def test_huge_invalidation_range_drops_every_day_without_listing_them(
    cache: SlotCache, upstream: FakeUpstream
) -> None:
    await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    far = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
    done = await cache.invalidate(InvalidationScope(ET, start=at("2026-11-24T00:00"), end=far))
    assert done.all_dates
    again = await cache.get_slots(query("2026-11-24T00:00", "2026-11-25T00:00"))
    assert again.freshness.source is Source.UPSTREAM
