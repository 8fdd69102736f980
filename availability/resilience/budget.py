"""Spend the Cal.com budget: one unit per call, and a pause when Cal.com throttles.

Cal.com allows ``limit`` calls per minute per API key and blocks the key for
a minute past that; the whole fleet shares the key, so the budget, not CPU,
is the scarce resource. Every upstream call (slots and event-type look-ups)
takes one unit first; with none left the call fails at once with
:class:`BudgetExhausted` (the core then serves a usable or stale bucket if it
has one), never a call over budget. If Cal.com answers 429 anyway (another
client on the key, clock skew), the whole cluster pauses until Cal.com's
reset instead of spending its budget on calls that can only be refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date

from availability.core.ports import (
    Budget,
    BudgetExhausted,
    EventTypeInfo,
    Priority,
    Upstream,
    UpstreamThrottled,
)
from availability.core.slots import Slot

__all__ = ["CALCOM_BLOCK", "BudgetedUpstream"]

logger = logging.getLogger(__name__)

CALCOM_BLOCK = 60.0
"""How long Cal.com blocks a key after a 429 when it does not say."""


class BudgetedUpstream:
    """An :class:`Upstream` that spends one unit of the budget per call."""

    def __init__(self, upstream: Upstream, budget: Budget) -> None:
        self._upstream = upstream
        self._budget = budget
        self.denied = 0
        """Calls refused because the budget was spent (read by the metrics)."""
        self.deferred = 0
        """Background calls refused because only interactive ones may spend what is left."""

    async def _spend(self, priority: Priority = Priority.INTERACTIVE) -> None:
        if not await self._budget.acquire(priority):
            if priority is Priority.BACKGROUND:
                self.deferred += 1
                raise BudgetExhausted("the background share of the Cal.com budget is spent")
            self.denied += 1
            raise BudgetExhausted(
                f"the Cal.com call budget ({self._budget.limit}/min, shared by all replicas) "
                "is spent; retry shortly"
            )

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
        await self._spend(priority)
        try:
            return await self._upstream.fetch_slots(
                event_type_id,
                first_day,
                last_day,
                duration_minutes=duration_minutes,
                timeout=timeout,
                priority=priority,
            )
        except UpstreamThrottled as exc:
            await self._throttled(exc)
            raise

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        await self._spend()
        try:
            return await self._upstream.fetch_event_type(event_type_id, timeout=timeout)
        except UpstreamThrottled as exc:
            await self._throttled(exc)
            raise

    async def _throttled(self, exc: UpstreamThrottled) -> None:
        pause = CALCOM_BLOCK if exc.retry_after is None else exc.retry_after
        logger.warning("Cal.com throttled the key: no Cal.com calls for %.0f s", pause)
        await self._budget.pause(pause)
