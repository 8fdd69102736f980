"""The adaptive TTL: its optimum, its estimates at low counts, its bounds, and the cache
feeding it from real refreshes."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from availability.adapters.stores.memory import MemoryStore
from availability.core.adaptive_ttl import AdaptiveTtl, optimal_ttl
from availability.core.buckets import Bucket
from availability.core.cache import SlotCache
from availability.core.clock import ManualClock
from availability.core.slots import Slot
from availability.core.ttl import TieredTtl
from tests.core.test_cache import ET, at, query
from tests.core.test_observe import Tally
from tests.helpers.fake_upstream import FakeUpstream

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC).timestamp()
TOMORROW = date(2026, 11, 24)  # a near day
LATER = date(2026, 12, 20)  # a far day
SLOT = Slot(int(NOW) + 86_400, int(NOW) + 88_200)
OTHER = Slot(int(NOW) + 90_000, int(NOW) + 91_800)


def cost_rate(ttl: float, reads: float, changes: float, stale_cost: float) -> float:
    """Calls plus weighted stale answers per second for one bucket, exactly (no mu*T << 1):
    one call per renewal cycle of ttl + 1/reads, and the hits at age a stale with
    probability 1 - exp(-changes * a)."""
    stale = reads * (ttl - (1 - math.exp(-changes * ttl)) / changes)
    return (1 + stale_cost * stale) / (ttl + 1 / reads)


@pytest.mark.parametrize(
    ("reads", "changes"),
    [(1 / 6, 0.15 / 3600), (1 / 30, 0.15 / 3600), (1 / 30, 1.5 / 3600), (1 / 600, 1 / 3600)],
)
def test_the_ttl_is_the_least_cost_of_calls_and_stale_answers(reads: float, changes: float) -> None:
    best = optimal_ttl(reads, changes, 100.0)
    grid = [best * f for f in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0)]
    assert all(
        cost_rate(best, reads, changes, 100.0) < cost_rate(t, reads, changes, 100.0) for t in grid
    )


def test_the_square_root_rule_is_the_limit_of_frequent_reads() -> None:
    reads, changes, cost = 1000.0, 1 / 3600, 50.0
    rule = math.sqrt(2 / (cost * reads * changes))
    assert optimal_ttl(reads, changes, cost) == pytest.approx(rule, rel=0.01)
    # A bucket almost never read does not get a vanishing or endless TTL, but 1 / (K mu).
    assert optimal_ttl(1e-9, changes, cost) == pytest.approx(1 / (cost * changes), rel=1e-3)
    assert optimal_ttl(reads, 0.0, cost) == math.inf


@pytest.mark.parametrize(
    ("day", "count", "tier_ttl"), [(TOMORROW, 3, 60), (LATER, 3, 300), (TOMORROW, 0, 30)]
)
def test_with_nothing_measured_each_tier_keeps_its_tier_ttl(
    day: date, count: int, tier_ttl: float
) -> None:
    policy = AdaptiveTtl(TieredTtl(empty=30, near=60, far=300), stale_cost=100)
    assert policy.ttl(day, count, NOW, ET) == pytest.approx(tier_ttl)
    assert policy.ttl(day, count, NOW) == pytest.approx(tier_ttl)


def bucket(fetched_at: float, slots: list[Slot], served: int = 0) -> Bucket:
    made = Bucket(fetched_at, fetched_at + 60, 0, slots)
    made.served = served
    return made


def feed(
    policy: AdaptiveTtl,
    *,
    cycles: int,
    lived: float,
    reads: int,
    change_every: int = 0,
    start: float = NOW,
    event_type_id: int = ET,
    day: date = TOMORROW,
) -> float:
    """``cycles`` refreshes of one bucket living ``lived`` s and read ``reads`` times each,
    every ``change_every``-th one finding a change; returns the time of the last."""
    at_ = start
    for n in range(1, cycles + 1):
        old = bucket(at_, [SLOT, OTHER], served=reads - 1)
        at_ += lived
        changed = change_every > 0 and n % change_every == 0
        policy.refreshed(
            event_type_id, day, old, bucket(at_, [SLOT] if changed else [SLOT, OTHER]), changed
        )
    return at_


def test_measured_reads_and_changes_move_the_ttl_as_the_rule_says() -> None:
    tiers = TieredTtl()
    busy, quiet = AdaptiveTtl(tiers), AdaptiveTtl(tiers)
    # Both see a change every 20 refreshes; the busy bucket is read 10 times per life.
    busy_now = feed(busy, cycles=200, lived=60, reads=10, change_every=20)
    quiet_now = feed(quiet, cycles=200, lived=60, reads=2, change_every=20)
    assert busy.ttl(TOMORROW, 2, busy_now, ET) < quiet.ttl(TOMORROW, 2, quiet_now, ET)

    changing, steady = AdaptiveTtl(tiers), AdaptiveTtl(tiers)
    changing_now = feed(changing, cycles=200, lived=60, reads=5, change_every=5)
    steady_now = feed(steady, cycles=200, lived=60, reads=5)
    assert (
        changing.ttl(TOMORROW, 2, changing_now, ET) < 60 < steady.ttl(TOMORROW, 2, steady_now, ET)
    )


def test_the_estimates_match_what_was_fed() -> None:
    policy = AdaptiveTtl(TieredTtl(), prior_exposure=60.0)
    now = feed(policy, cycles=8000, lived=30, reads=3, change_every=400)
    estimate = policy.estimate("near", now, ET)
    assert estimate.reads_per_second == pytest.approx(3 / 30, rel=0.1)  # the prior: 1/60
    assert estimate.changes_per_second == pytest.approx(1 / (400 * 30), rel=0.1)
    assert policy.minimum < estimate.ttl < policy.maximum
    assert estimate.ttl == pytest.approx(
        optimal_ttl(estimate.reads_per_second, estimate.changes_per_second, policy.stale_cost)
    )


def test_one_change_at_low_counts_moves_the_ttl_only_a_little() -> None:
    # The prior is worth a day at the change rate that gives the tier TTL: at cost 100 and
    # a read a minute, about 10 changes, so one more moves the TTL by well under 10 %.
    policy = AdaptiveTtl(TieredTtl(), stale_cost=100)
    before = policy.ttl(TOMORROW, 2, NOW, ET)
    feed(policy, cycles=1, lived=60, reads=1, change_every=1)
    assert before * 0.9 < policy.ttl(TOMORROW, 2, NOW + 60, ET) < before


def test_the_ttl_stays_within_its_bounds() -> None:
    tiers = TieredTtl()
    never = AdaptiveTtl(tiers, minimum=20, maximum=200, prior_exposure=600)
    always = AdaptiveTtl(tiers, minimum=20, maximum=200, prior_exposure=600)
    never_now = feed(never, cycles=5000, lived=60, reads=1)
    always_now = feed(always, cycles=500, lived=60, reads=30, change_every=1)
    assert never.ttl(TOMORROW, 2, never_now, ET) == 200
    assert always.ttl(TOMORROW, 2, always_now, ET) == 20
    assert never.longest == 200
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveTtl(tiers, minimum=300, maximum=200)


def test_the_read_rate_follows_peak_and_off_peak_hours() -> None:
    policy = AdaptiveTtl(TieredTtl())
    peak_end = feed(policy, cycles=120, lived=60, reads=10)  # two hours at 10 a minute
    peak = policy.estimate("near", peak_end, ET).reads_per_second
    quiet_end = feed(policy, cycles=60, lived=120, reads=2, start=peak_end)  # then 1 a minute
    quiet = policy.estimate("near", quiet_end, ET).reads_per_second
    assert peak == pytest.approx(10 / 60, rel=0.1)
    assert quiet == pytest.approx(1 / 60, rel=0.2)


def test_each_event_type_learns_its_own_rate_and_a_new_one_starts_from_the_pool() -> None:
    policy = AdaptiveTtl(TieredTtl(), stale_cost=10, prior_exposure=600)
    hot, cold, new = 1, 2, 3
    now = NOW
    for n in range(300):
        every = 1 if n % 10 == 0 else 0  # a change every tenth refresh
        now = feed(
            policy, cycles=1, lived=60, reads=20, change_every=every, start=now, event_type_id=hot
        )
        feed(policy, cycles=1, lived=60, reads=1, start=now - 60, event_type_id=cold)
    hot_ttl = policy.ttl(TOMORROW, 2, now, hot)
    cold_ttl = policy.ttl(TOMORROW, 2, now, cold)
    pooled = policy.ttl(TOMORROW, 2, now)
    assert hot_ttl < pooled < cold_ttl
    assert policy.ttl(TOMORROW, 2, now, new) == pooled


def test_tiers_learn_apart() -> None:
    policy = AdaptiveTtl(TieredTtl())
    now = feed(policy, cycles=500, lived=60, reads=10, change_every=5, day=TOMORROW)
    assert policy.ttl(TOMORROW, 2, now, ET) < 60
    assert policy.ttl(LATER, 2, now, ET) == pytest.approx(300)


def test_event_types_are_bounded() -> None:
    policy = AdaptiveTtl(TieredTtl(), max_event_types=2)
    for event_type_id in range(10):
        feed(policy, cycles=1, lived=60, reads=5, event_type_id=event_type_id)
    assert len(policy._by_event_type) == 2 * 3


async def test_the_cache_feeds_it_its_refreshes(clock: ManualClock) -> None:
    upstream = FakeUpstream()
    upstream.add(ET, at("2026-11-24T09:00"), at("2026-11-24T10:00"))
    policy = AdaptiveTtl(TieredTtl(), minimum=5, maximum=600)
    cache = SlotCache(upstream, MemoryStore(), clock=clock, ttl=policy, observer=Tally())
    day = ("2026-11-24T00:00", "2026-11-25T00:00")
    first = await cache.get_slots(query(*day))
    assert first.buckets[0].expires_at - first.buckets[0].fetched_at == pytest.approx(60)
    # A bucket read every second, whose slots an unreported booking changes every refresh:
    # the policy hears each refresh and shortens the TTL.
    for n in range(40):
        for _ in range(int(first.buckets[0].expires_at - clock()) + 1):
            await cache.get_slots(query(*day))
            clock.advance(1)
        if n % 2 == 0:
            upstream.remove(ET, at("2026-11-24T10:00"))
        else:
            upstream.add(ET, at("2026-11-24T10:00"))
        first = await cache.get_slots(query(*day))
    lived = first.buckets[0].expires_at - first.buckets[0].fetched_at
    assert lived < 40
    assert policy.minimum <= lived
