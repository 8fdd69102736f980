"""Cost of one cache hit in this process: the core's read and the wire encoding.

Drives the real SlotCache (in-memory store) over the sandbox's calendar on a
frozen clock, so only the hit path is measured, no I/O. Prints microseconds
per hit for a 1-day, 7-day and 30-day range, split into the core
(``SlotCache.get_slots``) and the response bytes (``transport.grpc.wire.encode_slots_response``).

    .venv/bin/python bench/hit_path.py [--hits 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from datetime import time as day_time
from zoneinfo import ZoneInfo

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import SlotCache, SlotsQuery
from availability.core.clock import ManualClock
from availability.core.ports import EventTypeInfo
from availability.core.slots import Slot
from availability.sandbox import SandboxCalendar, default_calendar
from availability.transport.grpc.wire import encode_slots_response

NOW = datetime(2026, 11, 23, 6, tzinfo=UTC).timestamp()


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


async def measure(hits: int) -> None:
    clock = ManualClock(NOW)
    cache = SlotCache(CalendarUpstream(default_calendar(clock)), MemoryStore(), clock=clock)
    print(f"{'range':>6} {'slots':>6} {'core us':>8} {'encode us':>10} {'bytes':>6}")
    for days in (1, 7, 30):
        query = SlotsQuery(1001, NOW, NOW + days * 86_400, ZoneInfo("Europe/Berlin"))
        answer = await cache.get_slots(query)
        started = time.perf_counter()
        for _ in range(hits):
            answer = await cache.get_slots(query)
        core = (time.perf_counter() - started) / hits
        started = time.perf_counter()
        for _ in range(hits):
            body = encode_slots_response(answer)
        encode = (time.perf_counter() - started) / hits
        slots = sum(len(day.slots) for day in answer.days)
        print(f"{days:>5}d {slots:>6} {core * 1e6:>8.1f} {encode * 1e6:>10.1f} {len(body):>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=5000)
    asyncio.run(measure(parser.parse_args().hits))


if __name__ == "__main__":
    main()
