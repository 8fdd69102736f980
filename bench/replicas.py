"""Benchmark: one replica vs several on one Redis, under an agent-like load.

Not a test: it prints figures. For each replica count it runs two phases, one
with the default in-process tier in front of Redis and one with
``AVAILABILITY_LOCAL_CACHE_BUCKETS=0`` (every hit goes through Redis), each
against a fresh sandbox Cal.com with realistic latency (0.3-0.8 s) and
Cal.com's own limit of 120 calls a minute switched on, and a fresh Redis
database. Many concurrent callers ask for Zipf-popular event types and days;
now and then a booking is made in the sandbox and reported with
InvalidateSlots. See ``bench/README.md`` for what the columns mean.

    .venv/bin/python bench/replicas.py [--duration S] [--replicas 1 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from availability.sandbox import RunningSandbox, SandboxError, serve_sandbox
from availability.v1 import availability_pb2 as pb
from tests.helpers.redis_db import flushed_url
from tests.helpers.replicas import Replica, running_replicas

__all__ = ["main"]

REDIS_DB = 15
# Popularity ranks: the team's intro call first, the never-available type last.
EVENT_TYPES = (1001, 1005, 1002, 1003, 1004, 1007, 1006)
ZONES = ("", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
CALL_DEADLINE = 2.0
"""What an agent waits for an answer before it says "let me check and call back"."""


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def ts(epoch: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def midnight(days_ahead: int) -> float:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=days_ahead)).timestamp()


@dataclass
class Phase:
    """What one phase measured, from the callers' side and at the sandbox."""

    replicas: int
    tier: str
    measured: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    hit_latencies: list[float] = field(default_factory=list)
    miss_latencies: list[float] = field(default_factory=list)
    slots_calls: int = 0
    slots_calls_total: int = 0
    lookups_total: int = 0
    throttled: int = 0
    degraded: int = 0
    """Times a replica found Redis unreachable and served from its local tier."""
    bookings: int = 0
    invalidation_errors: Counter[str] = field(default_factory=Counter)

    @property
    def answered(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.startswith("SOURCE_"))

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def hit_rate(self) -> float:
        return self.outcomes["SOURCE_CACHE"] / self.answered if self.answered else 0.0

    def errors(self) -> str:
        bad = {k: n for k, n in sorted(self.outcomes.items()) if not k.startswith("SOURCE_")}
        return ", ".join(f"{k} {n}" for k, n in bad.items()) or "none"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class Load:
    """The callers and the booking service of one phase."""

    def __init__(
        self, replicas: list[Replica], sandbox: RunningSandbox, rng: random.Random, horizon: int
    ) -> None:
        self.replicas = replicas
        self.sandbox = sandbox
        self.rng = rng
        self.measuring = False
        self.stop = asyncio.Event()
        self.phase: Phase | None = None
        self._et_weights = zipf_weights(len(EVENT_TYPES), 1.1)
        self._days = range(horizon)
        self._day_weights = zipf_weights(horizon, 1.0)

    def _pick(self) -> tuple[int, int]:
        et = self.rng.choices(EVENT_TYPES, self._et_weights)[0]
        day = self.rng.choices(self._days, self._day_weights)[0]
        return et, day

    def _request(self) -> tuple[pb.GetSlotsRequest, bool]:
        """A request, and whether it covers exactly one day bucket."""
        et, day = self._pick()
        span = 3 if self.rng.random() < 0.2 else 1
        start = max(time.time(), midnight(day))
        duration = 60 if et == 1003 and self.rng.random() < 0.3 else 0
        request = pb.GetSlotsRequest(
            event_type_id=et,
            start=ts(start),
            end=ts(midnight(day + span)),
            time_zone=self.rng.choice(ZONES),
            duration_minutes=duration,
        )
        return request, span == 1

    async def caller(self, think: float) -> None:
        while not self.stop.is_set():
            replica = self.rng.choice(self.replicas)
            request, one_bucket = self._request()
            began = time.perf_counter()
            try:
                answer = await replica.stub.GetSlots(request, timeout=CALL_DEADLINE)
                outcome = pb.Freshness.Source.Name(answer.freshness.source)
            except grpc.aio.AioRpcError as error:
                outcome = error.code().name
            elapsed = time.perf_counter() - began
            if self.measuring and self.phase is not None:
                self.phase.outcomes[outcome] += 1
                # freshness names the oldest bucket's source: a range whose oldest day
                # was cached may still have waited for Cal.com on another day, so
                # latencies are taken from one-bucket requests only.
                if one_bucket and outcome == "SOURCE_CACHE":
                    self.phase.hit_latencies.append(elapsed)
                elif one_bucket and outcome == "SOURCE_UPSTREAM":
                    self.phase.miss_latencies.append(elapsed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.rng.expovariate(1 / think))

    async def booking_service(self, every: float) -> None:
        """Books an offered slot now and then and reports it, as the booking service would."""
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.rng.expovariate(1 / every))
            if self.stop.is_set():
                return
            et, day = self._pick()
            lo = int(max(time.time() + 3600, midnight(max(day, 1))))
            offered = self.sandbox.calendar.slots(et, lo, int(midnight(max(day, 1) + 1)) - 1)
            if not offered:
                continue
            slot = self.rng.choice(offered)
            try:
                booking = self.sandbox.calendar.book(et, slot.start)
            except SandboxError:
                continue
            try:
                await self.rng.choice(self.replicas).stub.InvalidateSlots(
                    pb.InvalidateSlotsRequest(
                        event_type_id=et,
                        start=ts(booking.start),
                        end=ts(booking.end),
                        reason="booking_created",
                    ),
                    timeout=CALL_DEADLINE,
                )
            except grpc.aio.AioRpcError as error:
                if self.phase is not None:
                    self.phase.invalidation_errors[error.code().name] += 1
            if self.measuring and self.phase is not None:
                self.phase.bookings += 1


async def run_phase(count: int, tier: str, args: argparse.Namespace, seed: int) -> Phase:
    phase = Phase(count, tier)
    env = {}
    if tier == "redis":
        env["AVAILABILITY_LOCAL_CACHE_BUCKETS"] = "0"
    cache_url = flushed_url(REDIS_DB)
    try:
        async with (
            serve_sandbox(latency=(0.3, 0.8), rate_limit_per_minute=120, seed=seed) as sandbox,
            running_replicas(count, cache_url=cache_url, calcom_url=sandbox.url, env=env) as fleet,
        ):
            load = Load(fleet, sandbox, random.Random(seed), args.horizon)
            load.phase = phase
            tasks = [asyncio.create_task(load.caller(args.think)) for _ in range(args.callers)]
            tasks.append(asyncio.create_task(load.booking_service(args.book_every)))
            await asyncio.sleep(args.warmup)
            load.measuring = True
            window_start = time.time()
            began = time.perf_counter()
            await asyncio.sleep(args.duration)
            load.measuring = False
            phase.measured = time.perf_counter() - began
            load.stop.set()
            await asyncio.gather(*tasks)
            slots = [r for r in sandbox.requests if r.path == "/v2/slots"]
            phase.slots_calls = sum(1 for r in slots if r.at >= window_start)
            phase.slots_calls_total = len(slots)
            phase.lookups_total = sum(
                1 for r in sandbox.requests if r.path.startswith("/v2/event-types/")
            )
            phase.throttled = sandbox.requests.calls(None, status=429)
            phase.degraded = sum(r.log.count("Redis unreachable") for r in fleet)
    finally:
        flushed_url(REDIS_DB)
    return phase


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(phases: list[Phase], args: argparse.Namespace) -> str:
    columns = {p.tier: p for p in phases}
    order = [t for t in ("local", "redis") if t in columns]
    titles = {"local": "local tier (default)", "redis": "Redis tier (LOCAL_CACHE_BUCKETS=0)"}

    rows: list[tuple[str, list[str]]] = [
        ("GetSlots calls", [str(columns[t].requests) for t in order]),
        (
            "upstream /v2/slots per min",
            [f"{columns[t].slots_calls / columns[t].measured * 60:.1f}" for t in order],
        ),
        (
            "  all /v2/slots (incl. warm-up)",
            [str(columns[t].slots_calls_total) for t in order],
        ),
        ("  event-type look-ups", [str(columns[t].lookups_total) for t in order]),
        ("  Cal.com 429s", [str(columns[t].throttled) for t in order]),
        ("  Redis unreachable episodes", [str(columns[t].degraded) for t in order]),
        ("hit rate", [f"{columns[t].hit_rate() * 100:.1f} %" for t in order]),
        (
            "hit latency p50 / p99 ms (1 day)",
            [
                f"{ms(percentile(columns[t].hit_latencies, 50))} / "
                f"{ms(percentile(columns[t].hit_latencies, 99))}"
                for t in order
            ],
        ),
        (
            "miss latency p50 / p99 ms (1 day)",
            [
                f"{ms(percentile(columns[t].miss_latencies, 50))} / "
                f"{ms(percentile(columns[t].miss_latencies, 99))}"
                for t in order
            ],
        ),
        ("stale answers", [str(columns[t].outcomes["SOURCE_STALE"]) for t in order]),
        ("errors by status", [columns[t].errors() for t in order]),
        ("bookings + InvalidateSlots", [str(columns[t].bookings) for t in order]),
    ]
    width = max(len(label) for label, _ in rows) + 2
    cell = max(36, *(len(v) + 2 for _, values in rows for v in values))
    count = phases[0].replicas
    lines = [
        f"== {count} replica{'s' if count > 1 else ''}: {args.duration:.0f} s measured after "
        f"{args.warmup:.0f} s warm-up, {args.callers} callers",
        " " * width + "".join(titles[t].ljust(cell) for t in order),
    ]
    lines += [label.ljust(width) + "".join(v.ljust(cell) for v in values) for label, values in rows]
    return "\n".join(line.rstrip() for line in lines)


async def bench(args: argparse.Namespace) -> None:
    print(
        f"# {os.cpu_count()} CPUs; sandbox Cal.com latency 0.3-0.8 s, 120 calls/min; "
        f"callers ask about the next {args.horizon} days and think "
        f"{args.think * 1000:.0f} ms on average; a booking every "
        f"{args.book_every:.0f} s on average; deadline {CALL_DEADLINE:.0f} s",
        flush=True,
    )
    for count in args.replicas:
        phases = []
        for tier in ("local", "redis"):
            phases.append(await run_phase(count, tier, args, seed=args.seed + count))
        print(report(phases, args), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--callers", type=int, default=40, help="concurrent agents")
    parser.add_argument("--think", type=float, default=0.2, help="mean pause between calls, s")
    parser.add_argument("--horizon", type=int, default=7, help="days ahead callers ask about")
    parser.add_argument("--book-every", type=float, default=3.0, help="mean seconds per booking")
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
