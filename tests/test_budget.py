"""The shared Cal.com budget: a sliding window, interactive calls first, one per cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest
import redis.asyncio as aioredis

from availability.budget import (
    BudgetedUpstream,
    BudgetExhausted,
    LocalBudget,
    Priority,
    RedisBudget,
)
from availability.clock import ManualClock
from tests.fake_upstream import FakeUpstream
from tests.redis_db import flushed_url
from tests.test_cache import ET, NOW, at

DB = 10


async def take(budget: LocalBudget | RedisBudget, n: int, priority: Priority) -> int:
    return sum([await budget.acquire(priority) for _ in range(n)])


async def test_local_window_slides() -> None:
    clock = ManualClock(NOW.timestamp())
    budget = LocalBudget(10, clock=clock)
    assert await take(budget, 6, Priority.INTERACTIVE) == 6
    clock.advance(30)
    assert await take(budget, 6, Priority.INTERACTIVE) == 4
    clock.advance(30)  # the first six left the window, the last four did not
    assert await take(budget, 10, Priority.INTERACTIVE) == 6


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
    budgets = [RedisBudget(client, 12, clock=clock) for _ in range(3)]
    for budget in budgets:
        await budget.start()
    try:
        taken = [await take(b, 10, Priority.INTERACTIVE) for b in budgets]
        assert sum(taken) == 12
        clock.advance(60)
        assert await take(budgets[2], 5, Priority.INTERACTIVE) == 5
    finally:
        for budget in budgets:
            await budget.close()


async def test_cut_off_replica_uses_its_share() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    budget = RedisBudget(dead, 12, clock=ManualClock(0))
    budget._replicas = 3  # last seen alive before the cut
    try:
        assert await take(budget, 10, Priority.INTERACTIVE) == 4
    finally:
        await dead.aclose()


async def test_budgeted_upstream_refuses_past_the_budget() -> None:
    fake = FakeUpstream()
    fake.add(ET, at("2026-11-24T09:00"))
    upstream = BudgetedUpstream(fake, LocalBudget(1, clock=ManualClock(NOW.timestamp())))
    day = date(2026, 11, 24)
    assert await upstream.fetch_slots(ET, day, day)
    with pytest.raises(BudgetExhausted, match="budget"):
        await upstream.fetch_event_type(ET)
    assert fake.event_type_calls == []
