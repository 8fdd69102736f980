"""What the booking service sends for each kind of change (the proto's InvalidateSlots
comment), so no integrator has to work out a reschedule's scopes again.

Every change is reported as the booking's event type plus the hosts the caller
names, over the changed window; the server widens an event type to every event
type of its hosts. A reservation (Cal.com's ``POST /v2/slots/reservations``,
which holds a slot for others, 5 minutes by default) takes and frees time
exactly like a booking, so it is reported the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

from availability.v1 import availability_pb2 as pb
from availability_client._models import require_aware
from availability_client._wire import invalidate_request

__all__ = ["Reason", "reschedule_scope", "window_scope"]


class Reason(enum.StrEnum):
    """The fixed ``reason`` of each method: what the server's logs and metrics show."""

    BOOKING_CREATED = "booking_created"
    BOOKING_CANCELLED = "booking_cancelled"
    BOOKING_RESCHEDULED = "booking_rescheduled"
    SLOT_RESERVED = "slot_reserved"
    RESERVATION_RELEASED = "reservation_released"


def window_scope(
    reason: Reason,
    event_type_id: int,
    start: datetime,
    end: datetime,
    host_ids: Iterable[int],
) -> list[pb.InvalidateSlotsRequest]:
    return [
        invalidate_request(
            reason=reason, event_type_id=event_type_id, start=start, end=end, host_ids=host_ids
        )
    ]


def reschedule_scope(
    event_type_id: int,
    old: tuple[datetime, datetime],
    new: tuple[datetime, datetime],
    host_ids: Iterable[int],
) -> list[pb.InvalidateSlotsRequest]:
    """Both windows: the new one loses its slots, the old one's reappear.

    Overlapping or touching windows go as one call spanning both. Windows apart
    go as two calls rather than one spanning the gap, which could be weeks of
    days whose answers did not change (each one a Cal.com call to refill). The
    new window goes first: it is the one whose slots must stop being offered, so
    a failure before the second call leaves the safe half done (and the whole is
    safe to retry).
    """
    old_start, old_end = require_aware(old[0], "old_start"), require_aware(old[1], "old_end")
    new_start, new_end = require_aware(new[0], "new_start"), require_aware(new[1], "new_end")
    hosts = tuple(host_ids)
    if old_start <= new_end and new_start <= old_end:
        windows = [(min(old_start, new_start), max(old_end, new_end))]
    else:
        windows = [(new_start, new_end), (old_start, old_end)]
    return [
        invalidate_request(
            reason=Reason.BOOKING_RESCHEDULED,
            event_type_id=event_type_id,
            start=start,
            end=end,
            host_ids=hosts,
        )
        for start, end in windows
    ]
