"""The memory:// store: lazy expiry on its clock, a bound on entries, versions that only grow."""

from __future__ import annotations

from availability.adapters.stores.memory import MemoryStore
from availability.core.buckets import Bucket
from availability.core.cache import SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.core.slots import Slot
from tests.core.test_cache import ET, at
from tests.helpers.fake_upstream import FakeUpstream


def bucket(stamp: int = 1) -> Bucket:
    return Bucket(0.0, 60.0, stamp, (Slot(100, 200),))


async def test_an_entry_is_gone_once_its_ttl_has_run_out_on_the_clock() -> None:
    clock = ManualClock(1000.0)
    store = MemoryStore(clock=clock)
    await store.write([("b", bucket(), 10.0)])
    await store.write_record("r", {"hosts": [1]}, 10.0)
    clock.advance(9.9)
    assert (await store.read(["b"], []))[0] == [bucket()]
    assert await store.read_records(["r"]) == [{"hosts": [1]}]
    clock.advance(0.1)
    assert (await store.read(["b"], []))[0] == [None]
    assert await store.read_records(["r"]) == [None]
    assert store.size == 0  # dropped when read, with no timer per key


async def test_past_its_bound_the_oldest_writes_go_first() -> None:
    store = MemoryStore(clock=ManualClock(0.0), max_entries=10)
    for i in range(10):
        await store.write_record(f"k{i}", i, 60.0)
    await store.write_record("k0", "rewritten", 60.0)  # a rewrite is the newest write
    await store.write_record("k10", 10, 60.0)
    assert store.size <= 10
    values = await store.read_records([f"k{i}" for i in range(11)])
    assert values[0] == "rewritten"
    assert values[10] == 10
    assert values[1] is None  # the oldest write went
    for i in range(1000):
        await store.write_record("churn", 0, 60.0)
        await store.write_record(f"new{i}", 0, 60.0)
        assert store.size <= 10


async def test_a_seed_never_overwrites_and_a_bump_always_grows() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore(clock=clock)
    assert await store.seed_versions(["v"], 500, 60.0) == [500]
    assert await store.seed_versions(["v"], 900, 60.0) == [500]
    await store.bump_versions(["v", "w"], 400, 60.0)  # an older seed: +1; absent: the seed
    assert (await store.read([], ["v", "w"]))[1] == [501, 400]
    clock.advance(60.0)  # expired: re-created from the (newer) seed
    assert await store.seed_versions(["v"], 900, 60.0) == [900]


async def test_a_bound_that_evicts_versions_only_costs_fetches_never_old_slots() -> None:
    # Two entries: each read's versions push out its bucket or another's versions.
    clock = ManualClock(at("2026-11-24T00:00") - 3600)
    upstream = FakeUpstream()
    upstream.add(ET, at("2026-11-24T09:00"))
    store = MemoryStore(clock=clock, max_entries=2)
    cache = SlotCache(upstream, store, clock=clock)
    day = SlotsQuery(ET, at("2026-11-24T00:00"), at("2026-11-25T00:00"))
    assert [s.start for d in (await cache.get_slots(day)).days for s in d.slots] == [
        at("2026-11-24T09:00")
    ]
    upstream.remove(ET, at("2026-11-24T09:00"))
    clock.advance(1)
    again = await cache.get_slots(day)
    assert again.freshness.source is Source.UPSTREAM
    assert again.days == []
    await cache.close()


async def test_a_bump_is_at_least_its_seed_and_always_grows() -> None:
    store = MemoryStore(clock=ManualClock(0.0))
    assert await store.seed_versions(["a", "b"], 500, 60.0) == [500, 500]
    await store.bump_versions(["a", "b", "c"], 400, 60.0)  # older seed: +1; absent: seed
    assert (await store.read([], ["a", "b", "c"]))[1] == [501, 501, 400]
    await store.bump_versions(["a"], 9_000, 60.0)  # newer seed: the version tells when
    assert (await store.read([], ["a"]))[1] == [9_000]
    await store.close()
