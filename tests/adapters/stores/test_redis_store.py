"""The Redis store against the machine's real Redis (database 10, emptied around each test)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from availability.adapters.stores.redis_store import RedisStore
from availability.core.buckets import Bucket
from availability.core.slots import Seats, Slot
from tests.helpers.redis_db import flushed_url

DB = 10


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    shared = RedisStore.from_url(flushed_url(DB))
    try:
        yield shared
    finally:
        await shared.client.flushdb()
        await shared.close()


BUCKET = Bucket(10.0, 70.0, 5, (Slot(100, 200), Slot(300, 400, Seats(3, 1, 2, "u1"))))


async def test_buckets_and_versions_round_trip_as_json(store: RedisStore) -> None:
    await store.write([("k:b1", BUCKET, 60.0)])
    await store.seed_versions(["k:v1"], 1000, 60.0)
    buckets, versions = await store.read(["k:b1", "k:b2"], ["k:v1", "k:v2"])
    assert buckets == [BUCKET, None]
    assert versions == [1000, None]
    raw = await store.client.get("k:b1")
    assert json.loads(raw) == BUCKET.to_json()  # plain JSON, never pickle
    assert 0 < await store.client.pttl("k:b1") <= 60_000


async def test_seed_keeps_existing_and_bump_increments_or_seeds(store: RedisStore) -> None:
    assert await store.seed_versions(["a", "b"], 500, 60.0) == [500, 500]
    assert await store.seed_versions(["a"], 900, 60.0) == [500]
    await store.bump_versions(["a", "c"], 400, 60.0)
    _, versions = await store.read([], ["a", "b", "c"])
    assert versions == [501, 500, 400]


async def test_a_bump_is_at_least_its_seed_exactly_at_microsecond_scale(
    store: RedisStore,
) -> None:
    # Clock microseconds have 16 digits: Lua must not round them through a float format.
    older, now_us = 1_785_000_000_000_001, 1_785_000_123_456_789
    await store.seed_versions(["a", "b"], older, 60.0)
    await store.bump_versions(["a"], now_us, 60.0)  # max(v + 1, seed) = the seed
    await store.bump_versions(["b", "b"], older, 60.0)  # v + 1 twice
    _, versions = await store.read([], ["a", "b"])
    assert versions == [now_us, older + 2]


async def test_leases_are_exclusive_and_released_only_by_their_holder(store: RedisStore) -> None:
    assert await store.lease(["l1", "l2"], "111", 5.0) == [True, True]
    assert await store.lease(["l1", "l3"], "222", 5.0) == [False, True]
    await store.release(["l1"], "222")  # not the holder: nothing happens
    assert await store.lease(["l1"], "333", 5.0) == [False]
    await store.release(["l1"], "111")
    assert await store.lease(["l1"], "333", 5.0) == [True]


async def test_records(store: RedisStore) -> None:
    await store.write_record("r", {"hosts": [1, 2], "fetched_at": 3.5}, 60.0)
    assert await store.read_records(["r", "missing"]) == [
        {"hosts": [1, 2], "fetched_at": 3.5},
        None,
    ]


def test_url_with_acl_user_and_tls_is_accepted() -> None:
    store = RedisStore.from_url("rediss://reader:s3cret@cache.internal:6380/4")
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 4)
    assert kwargs["username"] == "reader"
    assert kwargs["password"] == "s3cret"
    assert store.client.connection_pool.connection_class.__name__ == "SSLConnection"
