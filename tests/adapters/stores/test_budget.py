"""The Cal.com budget stores: a sliding window, interactive calls first, one per cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from availability.adapters.stores.local_budget import LocalBudget
from availability.adapters.stores.redis_budget import RedisBudget
from availability.core.clock import ManualClock
from availability.core.keys import KeySchema
from availability.core.ports import BUDGET_WINDOW, Priority
from tests.conftest import NOW
from tests.helpers.redis_db import flushed_url

DB = 10


async def take(budget: LocalBudget | RedisBudget, n: int, priority: Priority) -> int:
    return sum([await budget.acquire(priority) for _ in range(n)])


async def test_local_window_slides() -> None:
    clock = ManualClock(NOW.timestamp())
    budget = LocalBudget(10, clock=clock)
    assert await take(budget, 6, Priority.INTERACTIVE) == 6
    clock.advance(31)
    assert await take(budget, 6, Priority.INTERACTIVE) == 4
    assert await budget.in_window() == 10
    clock.advance(BUDGET_WINDOW - 31)  # the first six left the window, the last four did not
    assert await budget.in_window() == 4
    assert await take(budget, 10, Priority.INTERACTIVE) == 6


async def test_window_has_a_margin_over_cal_coms_minute() -> None:
    # Units are taken before calls travel; Cal.com counts arrivals in 60 s windows.
    clock = ManualClock(NOW.timestamp())
    budget = LocalBudget(2, clock=clock)
    assert await take(budget, 2, Priority.INTERACTIVE) == 2
    clock.advance(60.5)
    assert await take(budget, 1, Priority.INTERACTIVE) == 0
    clock.advance(BUDGET_WINDOW - 60.5)
    assert await take(budget, 1, Priority.INTERACTIVE) == 1


async def test_a_pause_stops_every_call_until_it_ends() -> None:
    clock = ManualClock(NOW.timestamp())
    budget = LocalBudget(10, clock=clock)
    await budget.pause(42)
    assert await take(budget, 1, Priority.INTERACTIVE) == 0
    clock.advance(42)
    assert await take(budget, 1, Priority.INTERACTIVE) == 1


async def test_background_work_leaves_room_for_callers() -> None:
    budget = LocalBudget(10, clock=ManualClock(0), background_share=0.5)
    assert await take(budget, 10, Priority.BACKGROUND) == 5
    assert await take(budget, 10, Priority.INTERACTIVE) == 5


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(flushed_url(DB))
    try:
        yield connection
    finally:
        await connection.flushdb()
        await connection.aclose()


async def test_replicas_share_one_window_in_redis(client: aioredis.Redis) -> None:
    clock = ManualClock(NOW.timestamp())
    budgets = [RedisBudget(client, 12, clock=clock, keys=KeySchema()) for _ in range(3)]
    for budget in budgets:
        await budget.start()
    try:
        taken = [await take(b, 10, Priority.INTERACTIVE) for b in budgets]
        assert sum(taken) == 12
        assert [await b.in_window() for b in budgets] == [12, 12, 12]  # cluster-wide
        clock.advance(BUDGET_WINDOW)
        assert await take(budgets[2], 5, Priority.INTERACTIVE) == 5
        assert await budgets[0].in_window() == 5
        await budgets[0].pause(30)  # Cal.com said 429 to replica 0: everyone stops
        assert await take(budgets[1], 1, Priority.INTERACTIVE) == 0
    finally:
        for budget in budgets:
            await budget.close()


async def test_cut_off_replica_uses_its_share() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    budget = RedisBudget(dead, 12, clock=ManualClock(0), keys=KeySchema())
    budget._replicas = 3  # last seen alive before the cut
    try:
        assert await take(budget, 10, Priority.INTERACTIVE) == 4
    finally:
        await dead.aclose()


async def test_replica_known_cut_off_uses_its_share_without_asking_redis(
    client: aioredis.Redis,
) -> None:
    budget = RedisBudget(
        client, 12, clock=ManualClock(0), keys=KeySchema(), redis_down=lambda: True
    )
    budget._replicas = 4
    assert await take(budget, 10, Priority.INTERACTIVE) == 3
    assert await client.zcard("av1:budget") == 0  # nothing was taken from the shared window
    assert await budget.in_window() == 3  # what it can tell while cut off: its own share
