"""Between the clients' types and the generated messages: requests out, answers in.

The server is the one judge of a request's fields (it answers INVALID_ARGUMENT
naming the field); here only what cannot cross the wire unambiguously is
refused: a naive datetime, and a time zone this process cannot use to show
the answer's times.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from availability.v1 import availability_pb2 as pb
from availability_client._models import (
    Availability,
    Day,
    Freshness,
    Invalidated,
    Slot,
    Source,
    require_aware,
)

__all__ = [
    "availability_from",
    "get_slots_request",
    "invalidate_request",
    "invalidated_from",
    "zone_of",
]

_SOURCES = {
    pb.Freshness.SOURCE_UNSPECIFIED: Source.NONE,
    pb.Freshness.SOURCE_CACHE: Source.CACHE,
    pb.Freshness.SOURCE_UPSTREAM: Source.UPSTREAM,
    pb.Freshness.SOURCE_STALE: Source.STALE,
}


def zone_of(time_zone: str | ZoneInfo) -> ZoneInfo:
    """The zone to group days in and show times in; the server gets its IANA name."""
    if isinstance(time_zone, ZoneInfo):
        if not time_zone.key:
            raise ValueError("time_zone: a ZoneInfo read from a file has no IANA name to send")
        return time_zone
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"time_zone: unknown IANA time zone {time_zone[:64]!r}") from None


def get_slots_request(
    event_type_id: int,
    start: datetime,
    end: datetime,
    *,
    zone: ZoneInfo,
    duration_minutes: int | None,
    fresh: bool,
) -> pb.GetSlotsRequest:
    request = pb.GetSlotsRequest(
        event_type_id=event_type_id,
        time_zone=zone.key,
        duration_minutes=duration_minutes or 0,
        consistency=pb.CONSISTENCY_FRESH if fresh else pb.CONSISTENCY_CACHED,
    )
    request.start.FromDatetime(require_aware(start, "start"))
    request.end.FromDatetime(require_aware(end, "end"))
    return request


def availability_from(response: pb.GetSlotsResponse, zone: ZoneInfo) -> Availability:
    days = [
        Day(date.fromisoformat(day.date), [_slot(slot, zone) for slot in day.slots])
        for day in response.days
    ]
    wire = response.freshness
    freshness = Freshness(
        source=_SOURCES.get(wire.source, Source.NONE),
        age=wire.age.ToTimedelta(),
        fetched_at=wire.fetched_at.ToDatetime(zone) if wire.HasField("fetched_at") else None,
    )
    return Availability(days, freshness)


def _slot(slot: pb.Slot, zone: ZoneInfo) -> Slot:
    end = slot.end.ToDatetime(zone) if slot.HasField("end") else None
    if not slot.HasField("seats"):
        return Slot(slot.start.ToDatetime(zone), end)
    seats = slot.seats
    return Slot(
        slot.start.ToDatetime(zone),
        end,
        seats_total=seats.total,
        seats_remaining=seats.remaining,
        seats_booked=seats.booked,
    )


def invalidate_request(
    *,
    reason: str,
    event_type_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    host_ids: Iterable[int] = (),
    everything: bool = False,
) -> pb.InvalidateSlotsRequest:
    request = pb.InvalidateSlotsRequest(
        event_type_id=event_type_id or 0,
        reason=reason,
        host_ids=list(host_ids),
        everything=everything,
    )
    # One without the other goes as it is: the server names the missing field.
    if start is not None:
        request.start.FromDatetime(require_aware(start, "start"))
    if end is not None:
        request.end.FromDatetime(require_aware(end, "end"))
    return request


def invalidated_from(response: pb.InvalidateSlotsResponse) -> Invalidated:
    return Invalidated(
        dates=tuple(date.fromisoformat(day) for day in response.dates),
        all_dates=response.all_dates,
        event_type_ids=tuple(response.event_type_ids),
        host_ids=tuple(response.host_ids),
        everything=response.everything,
    )
