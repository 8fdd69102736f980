"""Eager runs: a coroutine that never waits ends at once; one that waits goes on as a task."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from datetime import date, timedelta
from typing import Any

import pytest

from availability.lab.calcom import SimulatedCalcom
from availability.lab.eager import EagerRuns
from availability.lab.timeskip import run

Starter = Callable[[Coroutine[Any, Any, None]], None]


def _scenario(start: Callable[[], Starter]) -> list[tuple[str, float]]:
    """A trace of coroutines that share futures and sleeps, started by ``start()``."""
    trace: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        shared: asyncio.Future[int] = loop.create_future()
        loop.call_later(1.0, shared.set_result, 7)
        launch = start()

        async def reader(name: str, delay: float) -> None:
            trace.append((f"{name} begins", loop.time()))
            if delay:
                await asyncio.sleep(delay)
            got = await asyncio.wait_for(asyncio.shield(shared), 5.0)
            await asyncio.sleep(0)
            trace.append((f"{name} got {got}", loop.time()))

        for name, delay in [("a", 0.0), ("b", 0.5), ("c", 0.0), ("d", 2.0)]:
            launch(reader(name, delay))
            trace.append((f"after {name}", loop.time()))
        await asyncio.sleep(3.0)

    run(main())
    return trace


def test_runs_wake_in_the_order_tasks_would() -> None:
    def tasks() -> Starter:
        held: set[asyncio.Task[None]] = set()
        return lambda coro: held.add(asyncio.create_task(coro))

    def eager() -> Starter:
        return EagerRuns().start

    as_tasks, as_runs = _scenario(tasks), _scenario(eager)
    # Each begins at once instead of on the next turn; after that, everything is the same.
    assert as_runs[:2] == [("a begins", 0.0), ("after a", 0.0)]
    assert [e for e in as_runs if "got" in e[0]] == [e for e in as_tasks if "got" in e[0]]
    assert [e for e in as_runs if "got" in e[0]] == [
        ("a got 7", 1.0),
        ("c got 7", 1.0),
        ("b got 7", 1.0),
        ("d got 7", 2.0),
    ]


def test_finished_waits_for_every_run_and_carries_a_failure() -> None:
    async def main(fail: bool) -> list[str]:
        runs = EagerRuns()
        ended: list[str] = []

        async def work(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            if fail and name == "slow":
                raise ValueError(name)
            ended.append(name)

        runs.start(work("slow", 2.0))
        runs.start(work("quick", 1.0))
        runs.close()
        await runs.finished
        return ended

    assert run(main(fail=False)) == ["quick", "slow"]
    with pytest.raises(ValueError, match="slow"):
        run(main(fail=True))


def test_any_taken_agrees_with_is_taken_slot_by_slot() -> None:
    # 60 half-hour slots a day run past midnight: those starts are booked under one day
    # and lie on the next, where is_taken does not look.
    calcom = SimulatedCalcom(2, 60, 0.0)
    rng = random.Random(3)
    days = [date(2026, 11, 23) + timedelta(days=i) for i in range(3)]
    for _ in range(400):
        calcom.book(rng.choice([1, 2]), rng.choice(days), rng)
    for event_type_id in (1, 2):
        for day in days:
            for start in calcom.day_slots(day):
                assert calcom.any_taken(event_type_id, [start]) == calcom.is_taken(
                    event_type_id, start
                )
    assert not calcom.any_taken(3, calcom.day_slots(days[0]))
