"""The circuit breaker on the injected clock: when it opens, what an open breaker costs,
one probe per interval, and the cluster-wide breaker through a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from availability.adapters.stores.local_budget import LocalBudget
from availability.adapters.stores.redis_store import RedisStore
from availability.core.clock import ManualClock
from availability.core.keys import KeySchema
from availability.core.ports import (
    BudgetExhausted,
    CircuitOpen,
    EventTypeNotFound,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from availability.resilience.breaker import BreakerState, CircuitBreaker, SharedBreakerState
from availability.resilience.budget import BudgetedUpstream
from tests.helpers.redis_db import flushed_url
from tests.helpers.scripted_port import DAY, ScriptedPort

DB = 8
FAILED = UpstreamUnavailable("Cal.com failed with HTTP 500")


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read afresh (mypy would carry an earlier assertion's narrowing over an await)."""
    return breaker.state


async def call(breaker: CircuitBreaker) -> bool:
    """One call; True if it succeeded."""
    try:
        await breaker.fetch_slots(1001, DAY, DAY, timeout=5)
    except UpstreamUnavailable:
        return False
    return True


async def test_five_consecutive_failures_open_it_and_open_costs_nothing(
    clock: ManualClock,
) -> None:
    port = ScriptedPort(default=FAILED)
    budget = LocalBudget(120, clock=clock)
    breaker = CircuitBreaker(BudgetedUpstream(port, budget), clock=clock)
    for _ in range(4):
        await call(breaker)
    assert state(breaker) is BreakerState.CLOSED
    await call(breaker)
    assert state(breaker) is BreakerState.OPEN
    assert budget.used == 5
    for _ in range(50):
        with pytest.raises(CircuitOpen, match="failing"):
            await breaker.fetch_event_type(1001)
    assert port.calls == 5  # nothing reached Cal.com...
    assert budget.used == 5  # ...and nothing was spent
    assert breaker.rejected == 50
    assert breaker.transitions == {BreakerState.OPEN: 1}


async def test_a_high_failure_ratio_opens_it_without_five_in_a_row(clock: ManualClock) -> None:
    pattern = [FAILED, FAILED, FAILED, None]  # 75 %, never more than three in a row
    port = ScriptedPort(*(pattern * 5))
    breaker = CircuitBreaker(port, clock=clock)
    for _ in range(9):
        await call(breaker)
        clock.advance(0.5)  # about Cal.com's 2 calls a second
    assert state(breaker) is BreakerState.CLOSED  # fewer than 10 calls in the window
    await call(breaker)  # 10 calls, 8 failed
    assert state(breaker) is BreakerState.OPEN


async def test_a_flaky_cal_com_keeps_it_closed_for_the_retries_to_work(
    clock: ManualClock,
) -> None:
    port = ScriptedPort(*([FAILED, None] * 50))
    breaker = CircuitBreaker(port, clock=clock)
    results = []
    for _ in range(100):
        results.append(await call(breaker))
        clock.advance(0.5)
    assert state(breaker) is BreakerState.CLOSED
    assert results.count(True) == 50


async def test_failures_outside_the_window_do_not_count_toward_the_ratio(
    clock: ManualClock,
) -> None:
    port = ScriptedPort(*([FAILED, FAILED, FAILED, None] * 10))
    breaker = CircuitBreaker(port, clock=clock)
    for _ in range(40):
        await call(breaker)
        clock.advance(2.0)  # 5 calls per 10 s window: never the 10 the ratio needs
    assert state(breaker) is BreakerState.CLOSED


@pytest.mark.parametrize(
    "error",
    [EventTypeNotFound("404"), UpstreamThrottled("429", retry_after=60)],
    ids=["404", "429"],
)
async def test_answers_from_cal_com_are_not_failures(
    clock: ManualClock, error: EventTypeNotFound | UpstreamThrottled
) -> None:
    breaker = CircuitBreaker(ScriptedPort(default=error), clock=clock)
    for _ in range(20):
        with pytest.raises(type(error)):
            await breaker.fetch_slots(1001, DAY, DAY)
    assert state(breaker) is BreakerState.CLOSED


async def test_the_budgets_refusals_are_no_verdict(clock: ManualClock) -> None:
    port = ScriptedPort(FAILED, FAILED, FAILED, FAILED)
    breaker = CircuitBreaker(BudgetedUpstream(port, LocalBudget(4, clock=clock)), clock=clock)
    for _ in range(4):
        await call(breaker)
    for _ in range(10):
        with pytest.raises(BudgetExhausted):
            await breaker.fetch_slots(1001, DAY, DAY)
    assert state(breaker) is BreakerState.CLOSED  # 4 failures; the refusals made no call


async def test_one_probe_per_interval_and_its_success_closes_it(clock: ManualClock) -> None:
    release = asyncio.Event()

    async def slow_success() -> None:
        await release.wait()

    port = ScriptedPort(*([FAILED] * 5), slow_success)
    breaker = CircuitBreaker(port, clock=clock, open_for=1.0)
    for _ in range(5):
        await call(breaker)
    clock.advance(0.9)
    with pytest.raises(CircuitOpen):
        await breaker.fetch_slots(1001, DAY, DAY)
    clock.advance(0.1)
    probe = asyncio.create_task(breaker.fetch_slots(1001, DAY, DAY))
    await asyncio.sleep(0)
    assert state(breaker) is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen, match="probe"):
        await breaker.fetch_slots(1001, DAY, DAY)  # one probe at a time
    release.set()
    await probe
    assert state(breaker) is BreakerState.CLOSED
    assert await call(breaker)
    assert port.calls == 7
    assert breaker.transitions == {
        BreakerState.OPEN: 1,
        BreakerState.HALF_OPEN: 1,
        BreakerState.CLOSED: 1,
    }


async def test_failed_probes_double_the_interval_up_to_the_maximum(clock: ManualClock) -> None:
    port = ScriptedPort(default=FAILED)
    breaker = CircuitBreaker(port, clock=clock, open_for=1.0, open_max=8.0)
    for _ in range(5):
        await call(breaker)
    intervals = []
    for _ in range(5):
        waited = 0.0
        while True:
            before = port.calls
            await call(breaker)
            if port.calls > before:
                break
            clock.advance(0.25)
            waited += 0.25
        intervals.append(waited)
    assert intervals == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert port.calls == 10  # five to open, then one probe per interval


async def test_a_hanging_probe_does_not_block_the_next_intervals_probe(
    clock: ManualClock,
) -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    port = ScriptedPort(*([FAILED] * 5), hang, None)
    breaker = CircuitBreaker(port, clock=clock, open_for=1.0)
    for _ in range(5):
        await call(breaker)
    clock.advance(1.0)
    stuck = asyncio.create_task(breaker.fetch_slots(1001, DAY, DAY))
    await asyncio.sleep(0)
    clock.advance(1.0)
    assert await call(breaker)
    assert state(breaker) is BreakerState.CLOSED
    stuck.cancel()


# -- one breaker for the cluster, through Redis ------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(flushed_url(DB))
    yield store
    await store.close()
    flushed_url(DB)


def replica(port: ScriptedPort, store: RedisStore, clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker(
        port, clock=clock, open_for=1.0, shared=SharedBreakerState(store, KeySchema("t"))
    )


async def test_a_breaker_opened_on_one_replica_stops_every_replica(
    redis_store: RedisStore, clock: ManualClock
) -> None:
    port_a, port_b = ScriptedPort(default=FAILED), ScriptedPort(default=None)
    a, b = replica(port_a, redis_store, clock), replica(port_b, redis_store, clock)
    for _ in range(5):
        await call(a)
    assert state(a) is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        await b.fetch_slots(1001, DAY, DAY)
    assert port_b.calls == 0
    assert state(b) is BreakerState.OPEN

    # One probe for the cluster per interval: the lease picks who.
    clock.advance(1.0)
    port_a.default = None
    assert await call(a)  # a's probe succeeds
    assert state(a) is BreakerState.CLOSED
    assert await call(b)  # b reads "closed" and calls again
    assert state(b) is BreakerState.CLOSED
    assert port_b.calls == 1


async def test_only_one_replica_probes_per_interval(
    redis_store: RedisStore, clock: ManualClock
) -> None:
    hold = asyncio.Event()

    async def slow_failure() -> None:
        await hold.wait()
        raise FAILED

    port_a = ScriptedPort(*([FAILED] * 5), slow_failure)
    port_b = ScriptedPort(default=None)
    a, b = replica(port_a, redis_store, clock), replica(port_b, redis_store, clock)
    for _ in range(5):
        await call(a)
    clock.advance(1.0)
    probing = asyncio.create_task(call(a))
    while port_a.calls < 6:  # noqa: ASYNC110 (the probe travels through Redis first)
        await asyncio.sleep(0.001)
    with pytest.raises(CircuitOpen):
        await b.fetch_slots(1001, DAY, DAY)  # a holds the probe lease
    assert port_b.calls == 0
    hold.set()
    assert not await probing
    with pytest.raises(CircuitOpen):  # a's failed probe reopened it for 2 s, for b too
        await b.fetch_slots(1001, DAY, DAY)
    assert port_b.calls == 0
