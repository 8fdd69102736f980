"""Cost of one cache hit in this process, and what watching it (metrics, logs) adds.

Three parts, each measured side by side in one run (variants alternate in
rounds, and the median round is reported, so drift of a shared machine hits
every variant alike):

1. **core**: the real SlotCache (in-memory store) over the sandbox's
   calendar on a frozen clock, so only the hit path is measured, no I/O:
   microseconds per hit for a 1-day, 7-day and 30-day range, with no
   observer and with the Prometheus one (``ServiceMetrics``); and the wire
   encoding (``transport.grpc.wire.encode_slots_response``).
2. **rpc**: a one-day GetSlots hit through a real grpc.aio server on
   loopback (the service's servicer, normal path: no fast lane), called back
   to back by a grpc.aio client in the same process: *bare* (no RPC observer,
   no cache observer: the code before metrics), *metrics* (the RPC observer
   wrapping the handlers and the cache observer, the canonical log line
   switched off), and
   *metrics + log* (its JSON line written to /dev/null).
3. **log line**: formatting and writing one canonical line alone.

    .venv/bin/python bench/hit_path.py [--hits 200] [--calls 100] [--rounds 101]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as day_time
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from availability.adapters.observability.logs import JsonFormatter, log_fields
from availability.adapters.observability.metrics import ServiceMetrics
from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import SlotCache, SlotsQuery
from availability.core.clock import ManualClock
from availability.core.observe import NO_OBSERVER, CacheObserver
from availability.core.ports import EventTypeInfo, Priority
from availability.core.slots import Slot
from availability.sandbox import SandboxCalendar, default_calendar
from availability.transport.grpc.observing import RpcObserver
from availability.transport.grpc.servicer import SERVICE_NAME, AvailabilityService, ServiceHandlers
from availability.transport.grpc.wire import encode_slots_response
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc

NOW = datetime(2026, 11, 23, 6, tzinfo=UTC).timestamp()
RPC_LOGGER = logging.getLogger("availability.rpc")


class CalendarUpstream:
    """The sandbox's truth through the Upstream port, without HTTP (not measured anyway)."""

    def __init__(self, calendar: SandboxCalendar) -> None:
        self._calendar = calendar

    async def fetch_slots(
        self,
        event_type_id: int,
        first_day: date,
        last_day: date,
        *,
        duration_minutes: int = 0,
        timeout: float | None = None,
        priority: Priority = Priority.INTERACTIVE,
    ) -> Mapping[date, Sequence[Slot]]:
        lo = int(datetime.combine(first_day, day_time(), UTC).timestamp())
        hi = int(datetime.combine(last_day, day_time(), UTC).timestamp()) + 86_399
        out: dict[date, list[Slot]] = {}
        for slot in self._calendar.slots(event_type_id, lo, hi, duration_minutes=duration_minutes):
            out.setdefault(datetime.fromtimestamp(slot.start, UTC).date(), []).append(slot)
        return out

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        et = self._calendar.event_type(event_type_id)
        return EventTypeInfo(event_type_id, frozenset(et.host_ids))


@dataclass(frozen=True)
class Figures:
    """Each variant's per-round figures. The best (lowest) round is the figure least
    disturbed by whatever else the machine does, as timeit reports it; the median is
    printed beside it to show how much that was."""

    rounds: dict[str, list[float]]

    def best(self, name: str) -> float:
        return min(self.rounds[name])

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def added(self, name: str, baseline: str) -> str:
        best = self.best(name) / self.best(baseline) - 1
        median = self.median(name) / self.median(baseline) - 1
        return f"{best:+6.1%} ({median:+.1%})"


async def side_by_side(
    variants: Mapping[str, Callable[[], Awaitable[float]]], rounds: int
) -> Figures:
    """``rounds`` figures of each variant, the variants taking turns within each round."""
    figures: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            # A collection landing in one variant's turn would be charged to it alone.
            gc.collect()
            gc.disable()
            try:
                figures[name].append(await measure())
            finally:
                gc.enable()
    return Figures(figures)


def cache(clock: ManualClock, observer: CacheObserver) -> SlotCache:
    upstream = CalendarUpstream(default_calendar(clock))
    return SlotCache(upstream, MemoryStore(), clock=clock, observer=observer)


async def core(hits: int, rounds: int) -> None:
    clock = ManualClock(NOW)
    caches = {"no observer": cache(clock, NO_OBSERVER), "metrics": cache(clock, ServiceMetrics())}
    print("== core: CPU microseconds per hit (SlotCache.get_slots), best round (median)")
    print(
        f"{'range':>6} {'slots':>6} {'no observer':>16} {'metrics':>16} {'added':>16} {'encode':>7}"
    )
    for days in (1, 7, 30):
        query = SlotsQuery(1001, NOW, NOW + days * 86_400, ZoneInfo("Europe/Berlin"))
        answers = [await each.get_slots(query) for each in caches.values()]

        figures = await side_by_side(
            {name: _hits(each, query, hits) for name, each in caches.items()}, rounds
        )
        started = time.perf_counter()
        for _ in range(hits):
            encode_slots_response(answers[0])
        encode = (time.perf_counter() - started) / hits * 1e6
        slots = sum(len(day.slots) for day in answers[0].days)
        off, on = (
            f"{figures.best(n):.2f} ({figures.median(n):.2f})" for n in ("no observer", "metrics")
        )
        print(
            f"{days:>5}d {slots:>6} {off:>16} {on:>16} "
            f"{figures.added('metrics', 'no observer'):>16} {encode:>7.1f}"
        )


def _hits(each: SlotCache, query: SlotsQuery, hits: int) -> Callable[[], Awaitable[float]]:
    async def measure() -> float:
        started = time.process_time()
        for _ in range(hits):
            await each.get_slots(query)
        return (time.process_time() - started) / hits * 1e6

    return measure


@contextlib.asynccontextmanager
async def grpc_server(observed: bool) -> AsyncIterator[pb_grpc.AvailabilityServiceAsyncStub]:
    """The service's gRPC stack on a loopback port, over a warm in-memory cache."""
    clock = ManualClock(NOW)
    metrics = ServiceMetrics(process_metrics=False) if observed else None
    observer = None if metrics is None else RpcObserver(metrics, logged_services=(SERVICE_NAME,))
    slot_cache = cache(clock, NO_OBSERVER if metrics is None else metrics)
    server = grpc.aio.server()
    handlers = ServiceHandlers(
        AvailabilityService(slot_cache, max_range_days=90, metrics=metrics), observer
    )
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.AvailabilityServiceStub(channel)
    finally:
        await server.stop(0)


def one_day() -> pb.GetSlotsRequest:
    start, end = Timestamp(), Timestamp()
    start.FromSeconds(int(NOW))
    end.FromSeconds(int(NOW) + 86_400)
    return pb.GetSlotsRequest(event_type_id=1001, start=start, end=end, time_zone="Europe/Berlin")


async def rpc(calls: int, rounds: int, sink: TextIO) -> None:
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    RPC_LOGGER.addHandler(handler)
    RPC_LOGGER.propagate = False
    request = one_day()
    try:
        async with grpc_server(False) as bare, grpc_server(True) as observed:
            for stub in (bare, observed):
                await stub.GetSlots(request)  # the miss; every later call is a hit

            def timing(
                stub: pb_grpc.AvailabilityServiceAsyncStub, level: int
            ) -> Callable[[], Awaitable[float]]:
                async def measure() -> float:
                    RPC_LOGGER.setLevel(level)
                    # CPU time of the process (client, server and grpc's threads): what a
                    # call costs, less disturbed than wall time by other work on the machine.
                    started = time.process_time()
                    for _ in range(calls):
                        await stub.GetSlots(request)
                    return (time.process_time() - started) / calls * 1e6

                return measure

            variants = {
                "bare": (bare, logging.ERROR),
                "metrics": (observed, logging.ERROR),
                "metrics + log": (observed, logging.INFO),
            }
            figures = await side_by_side(
                {name: timing(stub, level) for name, (stub, level) in variants.items()}, rounds
            )
            # Python function calls per RPC: a count, so no other work on the machine moves it.
            functions: dict[str, float] = {}
            for name, (stub, level) in variants.items():
                RPC_LOGGER.setLevel(level)
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(calls):
                    await stub.GetSlots(request)
                profile.disable()
                functions[name] = pstats.Stats(profile).total_calls / calls  # type: ignore[attr-defined]
    finally:
        RPC_LOGGER.removeHandler(handler)
        RPC_LOGGER.propagate = True
        RPC_LOGGER.setLevel(logging.NOTSET)
    print("== rpc: CPU microseconds per one-day GetSlots hit, client and server in one process")
    print(f"{'':>14} {'best (median)':>16} {'added':>16} {'Python calls':>13}")
    for name in figures.rounds:
        added = "" if name == "bare" else figures.added(name, "bare")
        print(
            f"{name:>14} {figures.best(name):>7.1f} ({figures.median(name):>6.1f}) {added:>16} "
            f"{functions[name]:>13.1f}"
        )


def log_line(lines: int) -> None:
    sink = open(os.devnull, "w")  # noqa: SIM115
    logger = logging.getLogger("bench.canonical")
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    fields = {
        "service": SERVICE_NAME,
        "method": "GetSlots",
        "status": "OK",
        "duration_ms": 0.412,
        "event_type_id": 1001,
        "days": 1,
        "fresh": False,
        "source": "cache",
        "age": 12.5,
        "error": None,
        "peer": "ipv4:127.0.0.1:51234",
        "request_id": "9f2c1a7e-1234",
    }
    started = time.perf_counter()
    for _ in range(lines):
        logger.info("%s %s", "GetSlots", "OK", extra=log_fields(**fields))
    each = (time.perf_counter() - started) / lines * 1e6
    sink.close()
    print(f"== log line: {each:.1f} us to format and write one canonical JSON line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short turns: the best of them is the least disturbed by the rest of the machine.
    parser.add_argument("--hits", type=int, default=200, help="core hits per turn")
    parser.add_argument("--calls", type=int, default=100, help="RPCs per turn")
    parser.add_argument("--rounds", type=int, default=101, help="turns of each variant")
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; grpcio {grpc.__version__}")
    asyncio.run(core(args.hits, args.rounds))
    with open(os.devnull, "w") as sink:  # where the canonical lines go
        asyncio.run(rpc(args.calls, args.rounds, sink))
    log_line(args.calls * 5)


if __name__ == "__main__":
    main()
