"""The in-process store's versions: seeded once, bumped to max(v + 1, seed)."""

from __future__ import annotations

from availability.adapters.stores.memory import MemoryStore


async def test_a_bump_is_at_least_its_seed_and_always_grows() -> None:
    store = MemoryStore()
    assert await store.seed_versions(["a", "b"], 500, 60.0) == [500, 500]
    await store.bump_versions(["a", "b", "c"], 400, 60.0)  # older seed: +1; absent: seed
    assert (await store.read([], ["a", "b", "c"]))[1] == [501, 501, 400]
    await store.bump_versions(["a"], 9_000, 60.0)  # newer seed: the version tells when
    assert (await store.read([], ["a"]))[1] == [9_000]
    await store.close()
