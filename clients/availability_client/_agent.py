"""The agent backend's side: read bookable slots, one voice turn at a time.

The default deadline is 1 s, one turn of a phone conversation: an answer that
comes later is no use to a caller who is waiting. GetSlots is idempotent, so
the channel retries UNAVAILABLE with backoff inside that second.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from availability_client._connection import AsyncConnection, Connection
from availability_client._models import Availability
from availability_client._wire import availability_from, get_slots_request, zone_of

__all__ = ["AgentClient", "AsyncAgentClient"]


class AgentClient(Connection):
    """Reads slots for the telephony agent (a ``reader`` token suffices).

    ``AgentClient(target, *, token=None, tls=None, timeout=1.0)``; use it as a
    context manager, and share one per process: it is safe across threads.
    """

    def get_slots(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        time_zone: str | ZoneInfo = "UTC",
        duration_minutes: int | None = None,
        fresh: bool = False,
        timeout: float | None = None,
    ) -> Availability:
        """Bookable slots of ``event_type_id`` starting in ``[start, end)``.

        ``start`` and ``end`` are timezone-aware (naive ones raise ``ValueError``).
        Days are grouped, and times shown, in ``time_zone`` (an IANA name or a
        ``ZoneInfo``). ``duration_minutes`` picks a length for event types that
        offer several (None: the event type's default). ``fresh`` skips the cache
        and asks Cal.com: it spends the shared Cal.com budget, so keep it for a
        final check.
        """
        zone = zone_of(time_zone)
        request = get_slots_request(
            event_type_id, start, end, zone=zone, duration_minutes=duration_minutes, fresh=fresh
        )
        return availability_from(self._get_slots(request, self._deadline(timeout)), zone)


class AsyncAgentClient(AsyncConnection):
    """:class:`AgentClient` for asyncio: the same methods, awaited.

    Create it (``async with AsyncAgentClient(...)``) inside the event loop that
    uses it, and share it between that loop's tasks.
    """

    async def get_slots(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        time_zone: str | ZoneInfo = "UTC",
        duration_minutes: int | None = None,
        fresh: bool = False,
        timeout: float | None = None,
    ) -> Availability:
        """Bookable slots of ``event_type_id`` starting in ``[start, end)``:
        see :meth:`AgentClient.get_slots`."""
        zone = zone_of(time_zone)
        request = get_slots_request(
            event_type_id, start, end, zone=zone, duration_minutes=duration_minutes, fresh=fresh
        )
        return availability_from(await self._get_slots(request, self._deadline(timeout)), zone)
