"""Memory per cached bucket, and the process's RSS with many buckets cached.

Fills the real SlotCache (in-memory store) with ``--buckets`` day buckets of
``--slots`` half-hour slots each (event types x days), serves each once so
its encoded slots are cached too (what a hit keeps), and reports tracemalloc's
bytes per bucket and the RSS after. Upstream and clock are in-process fakes:
only what the cache keeps is measured.

Then the fast lane's memo (:class:`~availability.transport.grpc.hit_memo.HitMemo`):
``--memo-entries`` distinct requests for a 1-day and a 7-day range, each kept
from a real cache answer as the servicer keeps it and then hit once (a hit
puts the freshness tail beside the days), and tracemalloc's bytes per entry.

    .venv/bin/python bench/memory.py [--buckets 100000] [--slots 16] [--memo-entries 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import tracemalloc
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from availability.adapters.stores.memory import MemoryStore
from availability.core.cache import SlotCache, SlotsQuery
from availability.core.clock import ManualClock
from availability.core.local_days import DAY
from availability.core.ports import EventTypeInfo, Priority
from availability.core.slots import Slot
from availability.transport.grpc.hit_memo import HitMemo
from availability.transport.grpc.wire import encode_days, encode_slots_response

START = datetime(2026, 11, 23, tzinfo=UTC)


class GridUpstream:
    """``slots`` half-hour slots a day from 08:00 UTC for any event type."""

    def __init__(self, slots: int) -> None:
        self._slots = slots

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
        out: dict[date, list[Slot]] = {}
        day = first_day
        while day <= last_day:
            base = int(datetime(day.year, day.month, day.day, 8, tzinfo=UTC).timestamp())
            out[day] = [Slot(base + i * 1800, base + i * 1800 + 1800) for i in range(self._slots)]
            day += timedelta(days=1)
        return out

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        return EventTypeInfo(event_type_id, frozenset({event_type_id}))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fill(cache: SlotCache, buckets: int, days: int, *, first: int) -> None:
    """``buckets`` more buckets: event types from ``first`` on, ``days`` days each."""
    for et in range(first, first + max(1, buckets // days)):
        start = START.timestamp()
        query = SlotsQuery(et, start, start + days * DAY)
        encode_slots_response(await cache.get_slots(query))  # a miss that fetches and stores
        encode_slots_response(await cache.get_slots(query))  # a hit: keeps the encoding


async def main(args: argparse.Namespace) -> None:
    clock = ManualClock(START.timestamp() - 3600)
    store = MemoryStore()
    cache = SlotCache(GridUpstream(args.slots), store, clock=clock)
    baseline = rss_mib()
    await fill(cache, args.buckets, args.days, first=1)
    gc.collect()
    print(f"RSS {rss_mib():,.0f} MiB with {args.buckets:,} buckets ({baseline:,.0f} MiB before)")
    # tracemalloc costs memory of its own: it counts a further sample, after the RSS reading.
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await fill(cache, args.sample, args.days, first=args.buckets + 1)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"{(after - before) / args.sample:,.0f} bytes per bucket of {args.slots} slots "
        "(tracemalloc; bucket, encoded slots, store entry, its day versions)"
    )
    for days in (1, 7):
        per_entry = await memo_entry_bytes(cache, clock, days, args.memo_entries)
        print(
            f"{per_entry:,.0f} bytes per fast-lane memo entry of a {days}-day range "
            f"(tracemalloc over {args.memo_entries:,}; request, days, tail, record)"
        )
    await cache.close()
    await store.close()


async def memo_entry_bytes(cache: SlotCache, clock: ManualClock, days: int, entries: int) -> float:
    """Bytes per memo entry: ``entries`` requests (each its own start second) over the
    same cached days, kept as the servicer keeps them and hit once."""
    memo = HitMemo(entries, clock=clock)
    start = START.timestamp()
    queries = [SlotsQuery(1, start + i, start + days * DAY) for i in range(entries)]
    answers = [await cache.get_slots(query) for query in queries]  # cached: hits, not kept
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for query, answer in zip(queries, answers, strict=True):
        # Stands for the request bytes: about as long, and one object per entry as they are.
        raw = f"{query.event_type_id}:{query.start}:{query.end}".encode()
        note = {"event_type_id": query.event_type_id, "days": days, "fresh": False}
        memo.keep(raw, answer, encode_days(answer), cache.generation, memo.monotonic(), note)
        memo.answer(raw, cache.generation)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    if len(memo) != entries or memo.hits != entries:
        raise RuntimeError("every request should have been kept and then hit once")
    return (after - before) / entries


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buckets", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--days", type=int, default=50, help="days per event type")
    parser.add_argument("--sample", type=int, default=10_000, help="buckets tracemalloc counts")
    parser.add_argument("--memo-entries", type=int, default=2_000, help="memo entries counted")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
