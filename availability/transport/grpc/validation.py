"""Turn wire requests into core queries, or say which field is wrong.

Messages name the proto field (``time_zone``, not ``timeZone``) so that a
caller can fix the request without reading the server's source.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp

from availability.core.cache import InvalidationScope, SlotsQuery
from availability.core.local_days import DAY
from availability.transport.caller_text import quote_caller_text
from availability.v1 import availability_pb2 as pb

__all__ = ["FieldViolation", "invalidation_scope", "slots_query"]

_MAX_DURATION_MINUTES = 1440


class FieldViolation(ValueError):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def slots_query(request: pb.GetSlotsRequest, *, max_range_days: int) -> SlotsQuery:
    _check_event_type_id(request.event_type_id)
    start = _required_time(request, "start")
    end = _required_time(request, "end")
    if end <= start:
        raise FieldViolation("end", "must be after start")
    if end - start > max_range_days * DAY:
        raise FieldViolation("end", f"must be at most {max_range_days} days after start")
    zone = _zone(request.time_zone)
    duration = request.duration_minutes
    if not 0 <= duration <= _MAX_DURATION_MINUTES:
        raise FieldViolation(
            "duration_minutes",
            f"must be 0 (the event type's default) or 1..{_MAX_DURATION_MINUTES}",
        )
    consistency = request.consistency
    if consistency not in pb.Consistency.values():
        raise FieldViolation("consistency", f"unknown value {consistency}")
    return SlotsQuery(
        event_type_id=request.event_type_id,
        start=start,
        end=end,
        time_zone=zone,
        duration_minutes=duration,
        fresh=consistency == pb.CONSISTENCY_FRESH,
    )


def invalidation_scope(request: pb.InvalidateSlotsRequest) -> InvalidationScope:
    if request.event_type_id < 0:
        raise FieldViolation("event_type_id", "must be a positive Cal.com event type id")
    for host_id in request.host_ids:
        if host_id <= 0:
            raise FieldViolation("host_ids", "must be positive Cal.com user ids")
    if request.event_type_id == 0 and not request.host_ids and not request.everything:
        raise FieldViolation(
            "event_type_id", "set event_type_id, host_ids or everything to say what changed"
        )
    has_start, has_end = request.HasField("start"), request.HasField("end")
    if has_start != has_end:
        raise FieldViolation("end" if has_start else "start", "set both start and end, or neither")
    start = end = None
    if has_start:
        start = _time(request.start, "start")
        end = _time(request.end, "end")
        if end <= start:
            raise FieldViolation("end", "must be after start")
    return InvalidationScope(
        event_type_id=request.event_type_id or None,
        host_ids=tuple(sorted(set(request.host_ids))),
        everything=request.everything,
        start=start,
        end=end,
    )


def _check_event_type_id(value: int) -> None:
    if value <= 0:
        raise FieldViolation("event_type_id", "must be a positive Cal.com event type id")


def _required_time(request: pb.GetSlotsRequest, field: Literal["start", "end"]) -> float:
    if not request.HasField(field):
        raise FieldViolation(field, "is required")
    stamp: Timestamp = getattr(request, field)
    return _time(stamp, field)


def _time(stamp: Timestamp, field: str) -> float:
    # Timestamp's own valid range: 0001-01-01 .. 9999-12-31, nanos 0..999999999.
    if not -62_135_596_800 <= stamp.seconds <= 253_402_300_799 or not 0 <= stamp.nanos < 10**9:
        raise FieldViolation(field, "is not a valid timestamp")
    return stamp.seconds + stamp.nanos / 1e9


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: "Europe" is a directory of the zone database, a long name is no file name.
        raise FieldViolation(
            "time_zone", f"unknown IANA time zone {quote_caller_text(name, limit=64)}"
        ) from None
