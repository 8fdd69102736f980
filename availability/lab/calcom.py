"""Cal.com as the lab sees it: a calendar whose truth is known at every instant.

It implements the core's ``Upstream`` port directly (no HTTP: the lab runs on
virtual time, see :mod:`.timeskip`). An answer is the calendar as it was
when the call arrived, delivered ``latency`` seconds later, as a real answer
on the wire would be. Each event type has a host of its own and
``slots_per_day`` slots a day, from 00:00 UTC on the half hour.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from availability.core.local_days import utc_day
from availability.core.ports import EventTypeInfo, EventTypeNotFound, Priority
from availability.core.slots import Slot

__all__ = ["SLOT_SECONDS", "SimulatedCalcom"]

SLOT_SECONDS = 1800
_FIRST_SLOT = 0


class SimulatedCalcom:
    def __init__(self, event_types: int, slots_per_day: int, latency: float) -> None:
        self.latency = latency
        self.event_types = range(1, event_types + 1)
        self._slots_per_day = slots_per_day
        self._taken: dict[tuple[int, date], set[int]] = {}
        # The same bookings indexed per event type, each start kept only when it lies on
        # the day it was booked under (as ``is_taken`` looks it up): checking an answer
        # then costs one set operation per bucket instead of a date per slot.
        self._taken_starts: dict[int, set[int]] = {}
        self.calls: Counter[str] = Counter()

    # -- the truth -------------------------------------------------------------

    def day_slots(self, day: date) -> list[int]:
        base = int(datetime.combine(day, datetime.min.time(), UTC).timestamp())
        return [base + _FIRST_SLOT + i * SLOT_SECONDS for i in range(self._slots_per_day)]

    def is_taken(self, event_type_id: int, start: int) -> bool:
        day = datetime.fromtimestamp(start, UTC).date()
        return start in self._taken.get((event_type_id, day), ())

    def any_taken(self, event_type_id: int, starts: Iterable[int]) -> bool:
        """Whether any of ``starts`` is taken: ``any(is_taken(...))`` in one set operation."""
        taken = self._taken_starts.get(event_type_id)
        return taken is not None and not taken.isdisjoint(starts)

    def book(self, event_type_id: int, day: date, rng: random.Random) -> int:
        """Take a free slot of ``day``; when none would be left, free another one first
        (the day never runs out). Returns the booked slot's start."""
        taken = self._taken.setdefault((event_type_id, day), set())
        index = self._taken_starts.setdefault(event_type_id, set())
        free = [s for s in self.day_slots(day) if s not in taken]
        if len(free) <= 1:
            freed = rng.choice(sorted(taken))
            taken.discard(freed)
            if utc_day(freed) == day:
                index.discard(freed)
            free = [s for s in self.day_slots(day) if s not in taken]
        start = rng.choice(free)
        taken.add(start)
        if utc_day(start) == day:
            index.add(start)
        return start

    # -- the port --------------------------------------------------------------

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
        self.calls["slots"] += 1
        if event_type_id not in self.event_types:
            await asyncio.sleep(self.latency)
            raise EventTypeNotFound(f"no event type {event_type_id}")
        answer: dict[date, list[Slot]] = {}
        day = first_day
        while day <= last_day:
            taken = self._taken.get((event_type_id, day), ())
            answer[day] = [Slot(s, s + SLOT_SECONDS) for s in self.day_slots(day) if s not in taken]
            day += timedelta(days=1)
        await asyncio.sleep(self.latency)
        return answer

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        self.calls["event_type"] += 1
        await asyncio.sleep(self.latency)
        if event_type_id not in self.event_types:
            raise EventTypeNotFound(f"no event type {event_type_id}")
        return EventTypeInfo(event_type_id, frozenset({event_type_id}))
