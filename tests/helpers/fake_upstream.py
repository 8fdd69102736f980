"""An in-process implementation of the Upstream port for unit tests of the core.

It holds a truth (slots per event type), counts calls, and can hold fetches
on an event or fail them, so races and failures are deterministic. Transport
and integration tests use the sandbox over real HTTP instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from availability.core.local_days import utc_day
from availability.core.ports import EventTypeInfo, EventTypeNotFound, Priority, UpstreamError
from availability.core.slots import Slot


@dataclass(frozen=True)
class Call:
    event_type_id: int
    first_day: date
    last_day: date
    duration_minutes: int
    timeout: float | None = None
    priority: Priority = Priority.INTERACTIVE


class FakeUpstream:
    def __init__(self) -> None:
        self.truth: dict[int, list[Slot]] = {}
        self.hosts: dict[int, frozenset[int]] = {}
        self.event_type_calls: list[int] = []
        self.calls: list[Call] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: UpstreamError | None = None
        self.event_type_error: UpstreamError | None = None
        """Fails event-type look-ups only (e.g. no API key: slots still answer)."""
        self.started = asyncio.Event()
        self.event_type_gate: asyncio.Event | None = None
        """Holds event-type look-ups (``gate`` holds slots fetches only)."""
        self.event_type_started = asyncio.Event()

    def add(self, event_type_id: int, *starts: int, length: int = 1800) -> None:
        slots = self.truth.setdefault(event_type_id, [])
        slots.extend(Slot(s, s + length) for s in starts)
        slots.sort()

    def remove(self, event_type_id: int, start: int) -> None:
        self.truth[event_type_id] = [s for s in self.truth[event_type_id] if s.start != start]

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
        self.calls.append(
            Call(event_type_id, first_day, last_day, duration_minutes, timeout, priority)
        )
        # Snapshot the truth when the fetch *begins*, as Cal.com would answer.
        snapshot = list(self.truth.get(event_type_id, ()))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if event_type_id not in self.truth:
            raise EventTypeNotFound(f"no event type {event_type_id}")
        out: dict[date, list[Slot]] = {}
        for slot in snapshot:
            day = utc_day(slot.start)
            if first_day <= day <= last_day:
                out.setdefault(day, []).append(slot)
        return out

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        self.event_type_calls.append(event_type_id)
        self.event_type_started.set()
        if self.event_type_gate is not None:
            await self.event_type_gate.wait()
        if self.event_type_error is not None:
            raise self.event_type_error
        if self.fail_with is not None:
            raise self.fail_with
        if event_type_id not in self.truth:
            raise EventTypeNotFound(f"no event type {event_type_id}")
        return EventTypeInfo(event_type_id, self.hosts.get(event_type_id, frozenset()))
