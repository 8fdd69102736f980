"""Benchmark: the real server through a fault schedule played by a sandbox Cal.com.

Not a test: it prints figures. One server (in this process, on the system
clock) in front of a sandbox Cal.com with realistic latency (0.3-0.8 s) and
Cal.com's own limit of 120 calls a minute. ``--callers`` concurrent callers
ask for a working set (event types x days, with short TTLs so buckets expire
during the faults) and, now and then, a day nobody asked for yet (a cold
read); every RPC has a 2 s deadline. The schedule:

    healthy (--healthy s) -> Cal.com answers 500 (--errors s) -> healthy again
    (--gap s) -> Cal.com stalls, answering nothing (--stall s) -> recovery (--recovery s)

For each phase it prints answers by status, the stale share and the oldest
answer served, p50/p99 latency, Cal.com calls per second, retry
amplification, breaker state changes and, after a fault, how long until a
caller got a fresh answer from Cal.com again. See ``bench/README.md``.

    .venv/bin/python bench/chaos.py [--callers 20] [--errors 20] [--stall 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from availability.config import Settings
from availability.sandbox import RunningSandbox, serve_sandbox
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc

__all__ = ["main"]

WORKING_SET_EVENT_TYPES = (1001, 1002, 1005, 1007)
CALL_DEADLINE = 2.0
"""What an agent waits for an answer before it says "let me check and call back"."""
SOURCES = {
    pb.Freshness.SOURCE_CACHE: "cache",
    pb.Freshness.SOURCE_UPSTREAM: "upstream",
    pb.Freshness.SOURCE_STALE: "stale",
}


def ts(epoch: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def midnight(days_ahead: int) -> float:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=days_ahead)).timestamp()


@dataclass
class Answer:
    at: float
    """Monotonic time the answer arrived."""
    outcome: str
    """``ok/cache``, ``ok/upstream``, ``ok/stale`` or a gRPC status name."""
    latency: float
    age: float = 0.0


@dataclass
class Phase:
    name: str
    fault: bool = False
    started: float = 0.0
    ended: float = 0.0
    wall_started: float = 0.0
    wall_ended: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    calcom_calls: int = 0
    fetches: int = 0
    retried: int = 0
    budget_denied: int = 0
    transitions: Counter[str] = field(default_factory=Counter)


class Recorder:
    """Counts what callers saw, and snapshots the server's counters at phase edges."""

    def __init__(self, service: RunningService, sandbox: RunningSandbox) -> None:
        self.service = service
        self.sandbox = sandbox
        self.phases: list[Phase] = []
        self._snapshot: tuple[int, int, int, Counter[str]] | None = None
        self.tracebacks = 0

    def _counters(self) -> tuple[int, int, int, Counter[str]]:
        retries = self.service.resilience.retries
        breaker = self.service.resilience.breaker
        transitions = Counter({state.value: n for state, n in breaker.transitions.items()})
        return retries.calls, retries.retried, retries.budget_denied, transitions

    def begin(self, name: str, *, fault: bool = False) -> Phase:
        if self.phases:
            self._close(self.phases[-1])
        phase = Phase(name, fault, started=time.monotonic(), wall_started=time.time())
        self.phases.append(phase)
        self._snapshot = self._counters()
        return phase

    def finish(self) -> None:
        self._close(self.phases[-1])

    def _close(self, phase: Phase) -> None:
        phase.ended, phase.wall_ended = time.monotonic(), time.time()
        assert self._snapshot is not None
        calls, retried, denied, transitions = self._counters()
        was_calls, was_retried, was_denied, was_transitions = self._snapshot
        phase.fetches, phase.retried, phase.budget_denied = (
            calls - was_calls,
            retried - was_retried,
            denied - was_denied,
        )
        phase.transitions = transitions - was_transitions
        phase.calcom_calls = sum(
            1 for r in self.sandbox.requests if phase.wall_started <= r.at < phase.wall_ended
        )

    def record(self, answer: Answer) -> None:
        self.phases[-1].answers.append(answer)


class TracebackCounter(logging.Handler):
    """Counts log records that carry a traceback (there should be none)."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.DEBUG)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.recorder.tracebacks += 1


async def caller(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    recorder: Recorder,
    rng: random.Random,
    args: argparse.Namespace,
    running: Callable[[], bool],
) -> None:
    while running():
        event_type = rng.choice(WORKING_SET_EVENT_TYPES)
        if rng.random() < args.cold_share:
            day = rng.randrange(args.days + 1, args.days + 60)  # most likely never asked
        else:
            day = rng.randrange(1, args.days + 1)
        request = pb.GetSlotsRequest(
            event_type_id=event_type, start=ts(midnight(day)), end=ts(midnight(day + 1))
        )
        started = time.monotonic()
        try:
            response = await stub.GetSlots(request, timeout=CALL_DEADLINE)
        except grpc.aio.AioRpcError as error:
            outcome, age = error.code().name, 0.0
        else:
            outcome = "ok/" + SOURCES.get(response.freshness.source, "none")
            age = response.freshness.age.seconds + response.freshness.age.nanos / 1e9
        now = time.monotonic()
        recorder.record(Answer(now, outcome, now - started, age))
        await asyncio.sleep(rng.expovariate(1 / args.think))


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(recorder: Recorder, args: argparse.Namespace) -> None:
    print(
        f"# {args.callers} callers, think {args.think} s, deadline {CALL_DEADLINE:g} s; "
        f"working set {len(WORKING_SET_EVENT_TYPES)} event types x {args.days} days, "
        f"cold share {args.cold_share:.0%}; TTL {args.ttl:g} s; sandbox 0.3-0.8 s, 120/min"
    )
    width, label_width = 26, 32
    header = "".join(f"{p.name:<{width}}" for p in recorder.phases)
    print(f"{'phase':<{label_width}}{header}")

    def row(label: str, cell: Callable[[Phase], str]) -> None:
        print(f"{label:<{label_width}}" + "".join(f"{cell(p):<{width}}" for p in recorder.phases))

    row("seconds", lambda p: f"{p.ended - p.started:.0f}")
    row("answers", lambda p: str(len(p.answers)))

    def count(outcome: str) -> Callable[[Phase], str]:
        return lambda p: str(sum(a.outcome == outcome for a in p.answers))

    for outcome in ("ok/cache", "ok/upstream", "ok/stale"):
        row(f"  {outcome}", count(outcome))

    def errors(p: Phase) -> str:
        counts = Counter(a.outcome for a in p.answers if not a.outcome.startswith("ok/"))
        return ", ".join(f"{k} {v}" for k, v in counts.most_common()) or "none"

    row("  errors", errors)

    def stale_share(p: Phase) -> str:
        ok = [a for a in p.answers if a.outcome.startswith("ok/")]
        stale = sum(a.outcome == "ok/stale" for a in ok)
        return f"{stale / len(ok):.1%}" if ok else "-"

    row("stale share of OK answers", stale_share)
    row(
        "max served age s",
        lambda p: (
            f"{max((a.age for a in p.answers if a.outcome.startswith('ok/')), default=0):.1f}"
        ),
    )
    row(
        "latency p50 / p99 ms",
        lambda p: (
            f"{percentile([a.latency for a in p.answers], 0.5) * 1000:.1f} / "
            f"{percentile([a.latency for a in p.answers], 0.99) * 1000:.1f}"
        ),
    )
    row(
        "latency max ms",
        lambda p: f"{max((a.latency for a in p.answers), default=0) * 1000:.0f}",
    )
    row("Cal.com calls per second", lambda p: f"{p.calcom_calls / (p.ended - p.started):.2f}")

    def amplification(p: Phase) -> str:
        misses = sum(a.outcome != "ok/cache" for a in p.answers)
        return f"{p.calcom_calls / misses:.2f}" if misses else "-"

    row("Cal.com calls per visible miss", amplification)
    row("fetches / retried / denied", lambda p: f"{p.fetches} / {p.retried} / {p.budget_denied}")
    row(
        "breaker state changes",
        lambda p: ", ".join(f"{k} {v}" for k, v in sorted(p.transitions.items())) or "none",
    )

    def recovery(p: Phase, until: Callable[[Phase], float | None]) -> str:
        index = recorder.phases.index(p)
        if p.fault or index == 0 or not recorder.phases[index - 1].fault:
            return "-"
        moment = until(p)
        return "never" if moment is None else f"{moment - p.started:.1f} s"

    def first_fresh(p: Phase) -> float | None:
        return next((a.at for a in p.answers if a.outcome == "ok/upstream"), None)

    def last_degraded(p: Phase) -> float | None:
        degraded = [a.at for a in p.answers if a.outcome not in ("ok/cache", "ok/upstream")]
        return max(degraded, default=p.started)

    row("recovered: first fresh answer", lambda p: recovery(p, first_fresh))
    row("  last stale or failed answer", lambda p: recovery(p, last_degraded))
    print(f"log records with a traceback: {recorder.tracebacks}")


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    async with serve_sandbox(rate_limit_per_minute=120, seed=args.seed) as sandbox:
        settings = Settings(
            grpc_addr="127.0.0.1:0",
            http_addr="127.0.0.1:0",
            calcom_url=sandbox.url,
            ttl_empty=args.ttl,
            ttl_near=args.ttl,
            ttl_far=args.ttl,
            shutdown_grace=1,
            shutdown_drain=0,
        )
        async with open_service(settings) as service:
            recorder = Recorder(service, sandbox)
            logging.getLogger().addHandler(TracebackCounter(recorder))
            channel = grpc.aio.insecure_channel(service.target)
            stub = pb_grpc.AvailabilityServiceStub(channel)
            stop = asyncio.Event()
            rng = random.Random(args.seed)
            recorder.begin("warm-up")
            callers = [
                asyncio.create_task(
                    caller(
                        stub, recorder, random.Random(rng.random()), args, lambda: not stop.is_set()
                    )
                )
                for _ in range(args.callers)
            ]
            await asyncio.sleep(args.warmup)
            recorder.phases.clear()
            recorder.begin("healthy")
            await asyncio.sleep(args.healthy)
            recorder.begin("Cal.com 500s", fault=True)
            sandbox.fail_next(500, count=10**9)
            await asyncio.sleep(args.errors)
            sandbox.clear_faults()
            recorder.begin("healthy again")
            await asyncio.sleep(args.gap)
            recorder.begin("Cal.com stalls", fault=True)
            sandbox.hold()
            await asyncio.sleep(args.stall)
            sandbox.clear_faults()
            recorder.begin("recovery")
            await asyncio.sleep(args.recovery)
            recorder.finish()
            stop.set()
            await asyncio.gather(*callers)
            await channel.close()
    report(recorder, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--think", type=float, default=0.5, help="mean pause between calls, s")
    parser.add_argument("--days", type=int, default=2, help="days in the working set")
    parser.add_argument("--cold-share", type=float, default=0.02)
    parser.add_argument("--ttl", type=float, default=10.0, help="every bucket TTL, s")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--healthy", type=float, default=10.0)
    parser.add_argument("--errors", type=float, default=20.0)
    parser.add_argument("--gap", type=float, default=10.0, help="healthy between faults, s")
    parser.add_argument("--stall", type=float, default=20.0)
    parser.add_argument("--recovery", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    asyncio.run(run(args))
    print(f"# {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
