"""Retries on the injected clock: what is retried, full-jitter backoff, the call's bound and
the retry budget. Sleeping advances the clock instead of waiting."""

from __future__ import annotations

import random

import pytest

from availability.core.clock import ManualClock
from availability.core.ports import (
    BudgetExhausted,
    CircuitOpen,
    EventTypeNotFound,
    Overloaded,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from availability.resilience.retries import RetryBudget, RetryingUpstream
from tests.helpers.scripted_port import DAY, Outcome, ScriptedPort

FAILED = UpstreamUnavailable("Cal.com failed with HTTP 500")


class Sleeper:
    """Sleeps by moving the clock: deterministic, and no real time passes."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def sleeper(clock: ManualClock) -> Sleeper:
    return Sleeper(clock)


def retrying(
    port: ScriptedPort, clock: ManualClock, sleeper: Sleeper, **kwargs: object
) -> RetryingUpstream:
    options: dict[str, object] = {
        "rng": random.Random(7),
        "sleep": sleeper,
        "timer": clock,
        "budget": RetryBudget(clock=clock, minimum=100),
    } | kwargs
    return RetryingUpstream(port, clock=clock, **options)  # type: ignore[arg-type]


async def test_a_5xx_is_retried_and_the_success_returned(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    port = ScriptedPort(FAILED, None)
    upstream = retrying(port, clock, sleeper)
    assert await upstream.fetch_slots(1001, DAY, DAY, timeout=5)
    assert (upstream.calls, upstream.attempts, upstream.retried) == (1, 2, 1)


async def test_at_most_three_attempts_then_the_last_error(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    port = ScriptedPort(default=FAILED)
    upstream = retrying(port, clock, sleeper)
    with pytest.raises(UpstreamUnavailable, match="500"):
        await upstream.fetch_event_type(1001, timeout=5)
    assert port.calls == 3
    assert (upstream.attempts, upstream.retried) == (3, 2)


@pytest.mark.parametrize(
    "error",
    [
        UpstreamRejected("400"),
        EventTypeNotFound("404"),
        UpstreamAuthError("401"),
        UpstreamThrottled("429", retry_after=0.01),
        BudgetExhausted("budget"),
        CircuitOpen("open"),
        Overloaded("busy"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_4xx_429_and_our_own_refusals_are_never_retried(
    clock: ManualClock, sleeper: Sleeper, error: UpstreamError
) -> None:
    port = ScriptedPort(error, None)
    upstream = retrying(port, clock, sleeper)
    with pytest.raises(type(error)):
        await upstream.fetch_slots(1001, DAY, DAY, timeout=5)
    assert port.calls == 1
    assert sleeper.slept == []


async def test_backoff_is_full_jitter_from_the_injected_random(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    port = ScriptedPort(default=FAILED)
    upstream = retrying(port, clock, sleeper, attempts=4, base_delay=0.1, max_delay=0.25)
    with pytest.raises(UpstreamUnavailable):
        await upstream.fetch_slots(1001, DAY, DAY, timeout=5)
    same = random.Random(7)
    assert sleeper.slept == [same.uniform(0, cap) for cap in (0.1, 0.2, 0.25)]


async def test_each_attempt_gets_what_the_earlier_ones_left_of_the_bound(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    async def slow() -> None:
        clock.advance(1.0)  # a second passes before Cal.com answers 500
        raise FAILED

    port = ScriptedPort(slow, slow, None)
    upstream = retrying(port, clock, sleeper)
    await upstream.fetch_slots(1001, DAY, DAY, timeout=5)
    first, second, third = port.timeouts
    assert first == 5
    assert second == pytest.approx(5 - 1 - sleeper.slept[0])
    assert third == pytest.approx(5 - 2 - sum(sleeper.slept))


async def test_no_retry_when_the_bound_leaves_no_time_for_another_attempt(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    async def stall() -> None:
        clock.advance(2.0)
        raise UpstreamUnavailable("Cal.com did not answer within 2 s")

    port = ScriptedPort(stall, None)
    upstream = retrying(port, clock, sleeper)
    with pytest.raises(UpstreamUnavailable, match="did not answer"):
        await upstream.fetch_slots(1001, DAY, DAY, timeout=2.0)
    assert port.calls == 1


async def test_a_call_without_a_timeout_uses_the_default_bound(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    port = ScriptedPort(None)
    upstream = retrying(port, clock, sleeper, default_timeout=4.0)
    await upstream.fetch_slots(1001, DAY, DAY)
    assert port.timeouts == [4.0]


async def test_the_retry_budget_keeps_retries_to_a_share_of_calls(
    clock: ManualClock, sleeper: Sleeper
) -> None:
    # An outage: every call fails. 100 calls may earn 10 retries (10 %), not 200.
    port = ScriptedPort(default=FAILED)
    budget = RetryBudget(clock=clock, ratio=0.1, minimum=5, window=10.0)
    upstream = retrying(port, clock, sleeper, budget=budget)
    for _ in range(100):
        with pytest.raises(UpstreamUnavailable):
            await upstream.fetch_slots(1001, DAY, DAY, timeout=5)
    assert upstream.calls == 100
    assert upstream.retried == 10
    assert port.calls == 110  # 1.1 attempts per call in an outage, not 3
    assert 90 <= upstream.budget_denied <= 100  # a call denied at its first or second retry


def test_the_retry_budget_has_a_floor_and_a_sliding_window(clock: ManualClock) -> None:
    budget = RetryBudget(clock=clock, ratio=0.1, minimum=5, window=10.0)
    budget.record_call()
    taken = [budget.try_retry() for _ in range(6)]
    assert taken == [True] * 5 + [False]  # a flaky Cal.com at low traffic: the floor
    clock.advance(9.9)
    assert not budget.try_retry()
    clock.advance(0.1)  # the first five slid out of the window
    assert budget.try_retry()


@pytest.mark.parametrize("script", [(FAILED, None), (FAILED, FAILED, None)])
async def test_a_flaky_upstream_does_not_fail_calls_within_the_floor(
    clock: ManualClock, sleeper: Sleeper, script: tuple[Outcome, ...]
) -> None:
    budget = RetryBudget(clock=clock)  # the defaults: 10 %, at least 5 per 10 s
    port = ScriptedPort(*(script * 2))
    upstream = retrying(port, clock, sleeper, budget=budget)
    for _ in range(2):
        assert await upstream.fetch_slots(1001, DAY, DAY, timeout=5)
