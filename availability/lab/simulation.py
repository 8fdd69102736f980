"""Play a workload against the real core on virtual time and measure what callers got.

The real :class:`~availability.core.cache.SlotCache` runs with the real
memory store, versions, single-flight and budget, on a
:class:`~.timeskip.TimeSkippingLoop`; only Cal.com is simulated
(:mod:`.calcom`). Because the simulation knows the calendar at every
instant, staleness is exact: an answer is stale when it offers a slot that
was already taken when the answer was given.

Figures per policy: hit ratio (answers served without waiting for Cal.com),
Cal.com calls per day (slot fetches and event-type look-ups), stale ratio,
and the mean and p99 latency callers waited on Cal.com (the service's own
CPU time, well under a millisecond per hit, is not simulated).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from availability.adapters.stores.local_budget import LocalBudget
from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import InvalidationScope, SlotCache, SlotsQuery, Source
from availability.core.local_days import DAY, utc_day
from availability.core.observe import LookupResult
from availability.core.ports import UpstreamError
from availability.core.windows import FetchWindows
from availability.lab.calcom import SLOT_SECONDS, SimulatedCalcom
from availability.lab.eager import EagerRuns
from availability.lab.policies import Policy
from availability.lab.timeskip import TimeSkippingLoop, run
from availability.lab.workload import Workload
from availability.resilience.budget import BudgetedUpstream

__all__ = ["EPOCH", "Features", "Result", "policy_workload", "simulate"]

EPOCH = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
"""Virtual time 0: a Monday, 00:00 UTC."""
_RATE_LIMIT = 120


@dataclass(frozen=True, slots=True)
class Features:
    """The service's budget savers, off by default so that fixed TTLs meet the closed
    form (which knows neither): whole windows per call and refresh-ahead."""

    windows: FetchWindows | None = None
    refresh_ahead: float = 0.0


@dataclass(frozen=True, slots=True)
class Result:
    policy: str
    hit_ratio: float
    calls_per_day: float
    stale_ratio: float
    mean_latency_ms: float
    p99_latency_ms: float
    answers: int
    errors: int
    slot_calls: int
    event_type_calls: int
    refreshes: int
    """Buckets fetched again while still current (what an adaptive policy learns from)."""
    changes_found: int
    """Of those, the ones whose slots had changed: bookings nobody reported."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _Tally:
    """What callers got, and (as the cache's observer) what its refreshes found. Observing
    also makes the cache count the answers each bucket served, which an adaptive policy
    reads as the bucket's read rate."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.hits = 0
        self.stale = 0
        self.errors = 0
        self.refreshes = 0
        self.changes_found = 0

    def lookups(self, result: LookupResult, count: int) -> None:
        return None

    def answered(self, source: Source, age: float) -> None:
        return None

    def refreshed(self, changed: bool, suspect_hits: int) -> None:
        self.refreshes += 1
        self.changes_found += changed


def simulate(workload: Workload, policy: Policy, features: Features | None = None) -> Result:
    """Run ``workload`` under ``policy``; deterministic for a given workload seed."""
    return run(_simulate(policy_workload(workload, policy), policy, features or Features()))


def policy_workload(workload: Workload, policy: Policy) -> Workload:
    """The workload as ``policy`` sees it: its own share of reported bookings, if it has one."""
    if policy.signaled is None:
        return workload
    return replace(workload, signaled=policy.signaled)


def _events(workload: Workload) -> Iterator[tuple[float, str]]:
    """Queries and bookings merged in time order, each stream with its own random stream."""
    queries = ((t, "query") for t in workload.query_times(random.Random(workload.seed)))
    bookings = ((t, "booking") for t in workload.booking_times(random.Random(workload.seed + 1)))
    return heapq.merge(queries, bookings)


async def _simulate(workload: Workload, policy: Policy, features: Features) -> Result:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, TimeSkippingLoop)
    clock = loop.clock(EPOCH)

    calcom = SimulatedCalcom(workload.event_types, workload.slots_per_day, workload.latency)
    tally = _Tally()
    cache = SlotCache(
        BudgetedUpstream(calcom, LocalBudget(_RATE_LIMIT, clock=clock)),
        MemoryStore(),
        clock=clock,
        ttl=policy.ttl(),
        observer=tally,
        windows=features.windows,
        refresh_ahead=features.refresh_ahead,
    )
    rng = random.Random(workload.seed + 2)
    event_types = list(calcom.event_types)
    # Cumulative once, not per event: ``choices`` draws the same either way.
    cum_weights = list(itertools.accumulate(workload.weights()))

    picked: dict[tuple[date, int], tuple[float, date]] = {}

    def pick_day() -> tuple[float, date]:
        """The day a query or booking is about: its midnight (UTC) and its date."""
        today = utc_day(clock())
        offset = 1 + (rng.randrange(workload.spread_days) if workload.spread_days > 1 else 0)
        day = picked.get((today, offset))
        if day is None:
            midnight = datetime.combine(today + timedelta(days=offset), datetime.min.time(), UTC)
            day = picked[today, offset] = (midnight.timestamp(), midnight.date())
        return day

    async def ask(event_type_id: int, day_start: float) -> None:
        asked = loop.time()
        query = SlotsQuery(event_type_id, day_start, day_start + workload.range_days * DAY)
        try:
            answer = await cache.get_slots(query)
        except UpstreamError:
            tally.errors += 1
            return
        tally.latencies.append(loop.time() - asked)
        if answer.freshness.source is Source.CACHE:
            tally.hits += 1
        # The slots offered are the bucket slices the answer's days are made of.
        if any(
            calcom.any_taken(event_type_id, run.bucket.starts[run.first : run.last])
            for day in answer.days
            for run in day.runs
        ):
            tally.stale += 1

    async def report(event_type_id: int, start: int) -> None:
        scope = InvalidationScope(event_type_id, start=start, end=start + SLOT_SECONDS)
        try:
            await cache.invalidate(scope)
        except UpstreamError:
            tally.errors += 1

    # The events are played from timer callbacks rather than by a task sleeping between
    # them (a future and a wake-up less per event); each timer is set the same way
    # ``asyncio.sleep`` sets it, so virtual time takes exactly the same values.
    events = _events(workload)
    runs = EagerRuns()

    def play(kind: str) -> None:
        try:
            play_due(kind)
        except BaseException as exc:  # a timer callback's error would only be logged
            runs.fail(exc)
            raise

    def play_due(kind: str) -> None:
        started: list[Coroutine[Any, Any, None]] = []
        while True:
            [event_type_id] = rng.choices(event_types, cum_weights=cum_weights)
            day_start, day = pick_day()
            if kind == "query":
                started.append(ask(event_type_id, day_start))
            else:
                start = calcom.book(event_type_id, day, rng)
                if rng.random() < workload.signaled:
                    started.append(report(event_type_id, start))
            upcoming = next(events, None)
            if upcoming is None:
                break
            at, kind = upcoming
            if at > loop.time():
                loop.call_later(at - loop.time(), play, kind)
                break
        # Started once the events due now are all played and the next one is timed, where
        # tasks created for them would have started.
        for coro in started:
            runs.start(coro)
        if upcoming is None:
            runs.close()

    first = next(events, None)
    if first is None:
        runs.close()
    elif first[0] > loop.time():
        loop.call_later(first[0] - loop.time(), play, first[1])
    else:
        play(first[1])
    await runs.finished
    await cache.close()

    answers = len(tally.latencies)
    latencies = sorted(tally.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    calls = sum(calcom.calls.values())
    return Result(
        policy=policy.name,
        hit_ratio=tally.hits / answers if answers else 0.0,
        calls_per_day=calls / workload.days,
        stale_ratio=tally.stale / answers if answers else 0.0,
        mean_latency_ms=1000 * sum(latencies) / answers if answers else 0.0,
        p99_latency_ms=1000 * p99,
        answers=answers,
        errors=tally.errors,
        slot_calls=calcom.calls["slots"],
        event_type_calls=calcom.calls["event_type"],
        refreshes=tally.refreshes,
        changes_found=tally.changes_found,
    )
