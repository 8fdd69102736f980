"""An Upstream port answering from a script, for the decorators in availability.resilience.

Each call takes the next outcome: an :class:`UpstreamError` to raise, ``None``
for a success, or a coroutine function to await (a slow or hanging call). It
records the ``timeout`` every call was given, so a test sees what the
decorator passed down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date

from availability.core.ports import EventTypeInfo, Priority, UpstreamError
from availability.core.slots import Slot

__all__ = ["Outcome", "ScriptedPort"]

Outcome = UpstreamError | Callable[[], Awaitable[None]] | None

DAY = date(2026, 11, 24)


class ScriptedPort:
    def __init__(self, *outcomes: Outcome, default: Outcome = None) -> None:
        self.script: deque[Outcome] = deque(outcomes)
        self.default = default
        self.timeouts: list[float | None] = []

    @property
    def calls(self) -> int:
        return len(self.timeouts)

    async def _answer(self, timeout: float | None) -> None:
        self.timeouts.append(timeout)
        outcome = self.script.popleft() if self.script else self.default
        if isinstance(outcome, UpstreamError):
            raise outcome
        if outcome is not None:
            await outcome()

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
        await self._answer(timeout)
        return {first_day: (Slot(1, 2),)}

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        await self._answer(timeout)
        return EventTypeInfo(event_type_id, frozenset({1}))
