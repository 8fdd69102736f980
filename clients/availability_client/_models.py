"""What the clients return: plain frozen dataclasses with aware datetimes, no protobuf."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

__all__ = ["Availability", "Day", "Freshness", "Invalidated", "Slot", "Source", "require_aware"]


class Source(enum.Enum):
    """Where an answer came from (the proto's ``Freshness.Source``)."""

    CACHE = "cache"
    """Every part came from the cache, within its TTL."""
    UPSTREAM = "upstream"
    """At least one part was fetched from Cal.com for this call, and none was stale."""
    STALE = "stale"
    """At least one part is past its TTL, served because Cal.com was unavailable or slow."""
    NONE = "none"
    """No data was needed (e.g. the whole range lies in the past)."""


@dataclass(frozen=True, slots=True)
class Freshness:
    """How fresh an answer is: ``source`` by the proto's rule (STALE if any part was stale,
    else UPSTREAM if any part was fetched for this call, else CACHE); ``age`` and
    ``fetched_at`` describe the oldest part."""

    source: Source
    age: timedelta
    fetched_at: datetime | None
    """None when no data was needed (``Source.NONE``)."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One bookable slot; times are aware datetimes in the requested time zone."""

    start: datetime
    end: datetime | None
    """None only if Cal.com did not say."""
    seats_total: int | None = None
    """Seat counts: None unless the event type is seated."""
    seats_remaining: int | None = None
    seats_booked: int | None = None


@dataclass(frozen=True, slots=True)
class Day:
    """The slots that start on one date of the requested time zone, ascending."""

    date: date
    slots: list[Slot]


@dataclass(frozen=True, slots=True)
class Availability:
    """The answer to ``get_slots``: only dates that have slots, ascending."""

    days: list[Day]
    freshness: Freshness

    def slots(self) -> Iterator[Slot]:
        """Every slot, in order."""
        for day in self.days:
            yield from day.slots

    def first_free(self, after: datetime | None = None) -> Slot | None:
        """The first slot starting at or after ``after`` (an aware datetime; default now)."""
        after = datetime.now(UTC) if after is None else require_aware(after, "after")
        return next((slot for slot in self.slots() if slot.start >= after), None)


@dataclass(frozen=True, slots=True)
class Invalidated:
    """What the server dropped for one booking-side call (the ``InvalidateSlotsResponse``;
    for a reschedule sent as two calls, both answers together)."""

    dates: tuple[date, ...]
    """UTC dates whose cached slots were invalidated; empty when ``all_dates``."""
    all_dates: bool
    """Every cached day was invalidated (no range was given, or ``everything``)."""
    event_type_ids: tuple[int, ...]
    """Event types known to the server whose cache was invalidated."""
    host_ids: tuple[int, ...]
    """Hosts whose event types were invalidated."""
    everything: bool

    def merged(self, other: Invalidated) -> Invalidated:
        all_dates = self.all_dates or other.all_dates
        return Invalidated(
            dates=() if all_dates else tuple(sorted({*self.dates, *other.dates})),
            all_dates=all_dates,
            event_type_ids=tuple(sorted({*self.event_type_ids, *other.event_type_ids})),
            host_ids=tuple(sorted({*self.host_ids, *other.host_ids})),
            everything=self.everything or other.everything,
        )


def require_aware(moment: datetime, name: str) -> datetime:
    """``moment`` itself; a naive datetime is refused, since its instant is a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment!r}")
    return moment
