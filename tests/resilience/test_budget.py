"""Spending the budget: no call past it, and a pause for Cal.com's reset after a 429."""

from __future__ import annotations

from datetime import date

import pytest

from availability.adapters.stores.local_budget import LocalBudget
from availability.core.clock import ManualClock
from availability.core.ports import BudgetExhausted, UpstreamThrottled
from availability.resilience.budget import BudgetedUpstream
from tests.conftest import NOW
from tests.core.test_cache import ET, at
from tests.helpers.fake_upstream import FakeUpstream


async def test_budgeted_upstream_refuses_past_the_budget() -> None:
    fake = FakeUpstream()
    fake.add(ET, at("2026-11-24T09:00"))
    upstream = BudgetedUpstream(fake, LocalBudget(1, clock=ManualClock(NOW.timestamp())))
    day = date(2026, 11, 24)
    assert await upstream.fetch_slots(ET, day, day)
    with pytest.raises(BudgetExhausted, match="budget"):
        await upstream.fetch_event_type(ET)
    assert fake.event_type_calls == []
    assert upstream.denied == 1


async def test_cal_com_429_pauses_the_budget_for_its_reset() -> None:
    clock = ManualClock(NOW.timestamp())
    fake = FakeUpstream()
    fake.add(ET, at("2026-11-24T09:00"))
    fake.fail_with = UpstreamThrottled("Cal.com rate limit reached", retry_after=20)
    budget = LocalBudget(100, clock=clock)
    upstream = BudgetedUpstream(fake, budget)
    day = date(2026, 11, 24)
    with pytest.raises(UpstreamThrottled):
        await upstream.fetch_slots(ET, day, day)
    fake.fail_with = None
    with pytest.raises(BudgetExhausted):
        await upstream.fetch_slots(ET, day, day)
    clock.advance(20)
    assert await upstream.fetch_slots(ET, day, day)
    assert len(fake.calls) == 2
