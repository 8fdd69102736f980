"""The booking service's side: report every change to bookings, and check a slot last.

Each method sends what the proto documents for its kind of change (see
:mod:`._scopes`) with a fixed ``reason``, and returns what the server
dropped. Invalidation is idempotent, so the channel retries UNAVAILABLE
within the deadline, and a caller that got an error may simply call again.

The default deadline is 5 s, not the agent's 1 s: these calls may wait on
Cal.com (the server learns an event type's hosts from it, and ``is_free``
reads it directly), 300-800 ms a round trip, and a report that gives up
early leaves a taken slot on offer until its TTL runs out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import reduce
from typing import ClassVar
from zoneinfo import ZoneInfo

from availability.v1 import availability_pb2 as pb
from availability_client._connection import AsyncConnection, Connection
from availability_client._models import Availability, Invalidated, require_aware
from availability_client._scopes import Reason, reschedule_scope, window_scope
from availability_client._wire import (
    availability_from,
    get_slots_request,
    invalidate_request,
    invalidated_from,
)

__all__ = ["AsyncBookingClient", "BookingClient"]

_UTC = ZoneInfo("UTC")


class BookingClient(Connection):
    """Reports booking changes (needs a ``writer`` token) and checks slots before booking.

    ``BookingClient(target, *, token=None, tls=None, timeout=5.0)``; use it as a
    context manager, and share one per process: it is safe across threads.
    ``host_ids`` (Cal.com user ids) add hosts to what the event type already
    implies, e.g. when the server has no Cal.com API key to look hosts up.
    """

    default_timeout: ClassVar[float] = 5.0

    def booking_created(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """A booking was made (or requested: it holds the time too) for ``[start, end)``."""
        return self._send(
            window_scope(Reason.BOOKING_CREATED, event_type_id, start, end, host_ids), timeout
        )

    def booking_cancelled(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """A booking of ``[start, end)`` was cancelled (or rejected): its slots reappear."""
        return self._send(
            window_scope(Reason.BOOKING_CANCELLED, event_type_id, start, end, host_ids), timeout
        )

    def booking_rescheduled(
        self,
        event_type_id: int,
        old_start: datetime,
        old_end: datetime,
        new_start: datetime,
        new_end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """A booking moved from ``[old_start, old_end)`` to ``[new_start, new_end)``.

        Both windows are invalidated (one call if they overlap, else two within
        the one deadline, the new window first), so the old window's slots
        reappear and the new one's disappear.
        """
        requests = reschedule_scope(
            event_type_id, (old_start, old_end), (new_start, new_end), host_ids
        )
        return self._send(requests, timeout)

    def slot_reserved(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """A slot was reserved (Cal.com's ``POST /v2/slots/reservations``, held for
        others 5 minutes by default): it stops being offered, like a booking."""
        return self._send(
            window_scope(Reason.SLOT_RESERVED, event_type_id, start, end, host_ids), timeout
        )

    def reservation_released(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """A reservation was deleted or ran out: the slot is offered again."""
        return self._send(
            window_scope(Reason.RESERVATION_RELEASED, event_type_id, start, end, host_ids),
            timeout,
        )

    def invalidate(
        self,
        *,
        reason: str,
        event_type_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        host_ids: Iterable[int] = (),
        everything: bool = False,
        timeout: float | None = None,
    ) -> Invalidated:
        """The raw InvalidateSlots, for changes the methods above do not name (a host's
        calendar changed outside Cal.com: ``host_ids`` with the range; recovery after an
        outage of the event stream: ``everything=True``). The scopes add up; ``start`` and
        ``end`` go together, and neither means every day."""
        request = invalidate_request(
            reason=reason,
            event_type_id=event_type_id,
            start=start,
            end=end,
            host_ids=host_ids,
            everything=everything,
        )
        return self._send([request], timeout)

    def is_free(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        duration_minutes: int | None = None,
        timeout: float | None = None,
    ) -> bool:
        """The booking path's last check: does Cal.com, asked now (not the cache), offer a
        slot starting at ``start`` and ending at ``end``? It spends the shared Cal.com
        budget, so call it once per booking, just before booking."""
        request = _exact_slot_request(event_type_id, start, end, duration_minutes)
        response = self._get_slots(request, self._deadline(timeout))
        return _offers(availability_from(response, _UTC), start, end)

    def _send(
        self, requests: Sequence[pb.InvalidateSlotsRequest], timeout: float | None
    ) -> Invalidated:
        return _merged(self._invalidate(requests, self._deadline(timeout)))


class AsyncBookingClient(AsyncConnection):
    """:class:`BookingClient` for asyncio: the same methods, awaited.

    Create it (``async with AsyncBookingClient(...)``) inside the event loop that
    uses it, and share it between that loop's tasks.
    """

    default_timeout: ClassVar[float] = BookingClient.default_timeout

    async def booking_created(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """See :meth:`BookingClient.booking_created`."""
        return await self._send(
            window_scope(Reason.BOOKING_CREATED, event_type_id, start, end, host_ids), timeout
        )

    async def booking_cancelled(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """See :meth:`BookingClient.booking_cancelled`."""
        return await self._send(
            window_scope(Reason.BOOKING_CANCELLED, event_type_id, start, end, host_ids), timeout
        )

    async def booking_rescheduled(
        self,
        event_type_id: int,
        old_start: datetime,
        old_end: datetime,
        new_start: datetime,
        new_end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """See :meth:`BookingClient.booking_rescheduled`."""
        requests = reschedule_scope(
            event_type_id, (old_start, old_end), (new_start, new_end), host_ids
        )
        return await self._send(requests, timeout)

    async def slot_reserved(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """See :meth:`BookingClient.slot_reserved`."""
        return await self._send(
            window_scope(Reason.SLOT_RESERVED, event_type_id, start, end, host_ids), timeout
        )

    async def reservation_released(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        host_ids: Iterable[int] = (),
        timeout: float | None = None,
    ) -> Invalidated:
        """See :meth:`BookingClient.reservation_released`."""
        return await self._send(
            window_scope(Reason.RESERVATION_RELEASED, event_type_id, start, end, host_ids),
            timeout,
        )

    async def invalidate(
        self,
        *,
        reason: str,
        event_type_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        host_ids: Iterable[int] = (),
        everything: bool = False,
        timeout: float | None = None,
    ) -> Invalidated:
        """See :meth:`BookingClient.invalidate`."""
        request = invalidate_request(
            reason=reason,
            event_type_id=event_type_id,
            start=start,
            end=end,
            host_ids=host_ids,
            everything=everything,
        )
        return await self._send([request], timeout)

    async def is_free(
        self,
        event_type_id: int,
        start: datetime,
        end: datetime,
        *,
        duration_minutes: int | None = None,
        timeout: float | None = None,
    ) -> bool:
        """See :meth:`BookingClient.is_free`."""
        request = _exact_slot_request(event_type_id, start, end, duration_minutes)
        response = await self._get_slots(request, self._deadline(timeout))
        return _offers(availability_from(response, _UTC), start, end)

    async def _send(
        self, requests: Sequence[pb.InvalidateSlotsRequest], timeout: float | None
    ) -> Invalidated:
        return _merged(await self._invalidate(requests, self._deadline(timeout)))


def _exact_slot_request(
    event_type_id: int, start: datetime, end: datetime, duration_minutes: int | None
) -> pb.GetSlotsRequest:
    # [start, end) holds every slot that starts inside the booking; _offers picks the one.
    return get_slots_request(
        event_type_id, start, end, zone=_UTC, duration_minutes=duration_minutes, fresh=True
    )


def _offers(availability: Availability, start: datetime, end: datetime) -> bool:
    start, end = require_aware(start, "start"), require_aware(end, "end")
    return any(
        slot.start == start
        and (slot.end is None or slot.end == end)
        and (slot.seats_remaining is None or slot.seats_remaining > 0)
        for slot in availability.slots()
    )


def _merged(responses: Sequence[pb.InvalidateSlotsResponse]) -> Invalidated:
    return reduce(Invalidated.merged, (invalidated_from(response) for response in responses))
