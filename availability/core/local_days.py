"""UTC day arithmetic for buckets, and regrouping slots by local date.

Buckets are UTC days; callers think in their own time zone. Regrouping walks
the (ascending) slots once and only consults the time zone at day
boundaries, so a week of slots costs a handful of zone look-ups, not one per
slot. A boundary is the first instant whose local date is the next date,
which is right on DST days (23- and 25-hour days) and where midnight itself
is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from availability.core.buckets import Bucket
from availability.core.slots import Slot

__all__ = [
    "DAY",
    "LocalDay",
    "SlotRun",
    "group_by_local_date",
    "utc_day",
    "utc_days",
]

DAY = 86_400.0
"""Seconds in a UTC day (UTC has no DST; leap seconds do not exist in epoch time)."""
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SlotRun:
    """Slots ``first`` to ``last`` (exclusive) of a cached bucket, shared, not copied."""

    bucket: Bucket
    first: int
    last: int

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(self.bucket.slot(i) for i in range(self.first, self.last))


@dataclass(frozen=True, slots=True)
class LocalDay:
    date: str
    """YYYY-MM-DD in the caller's time zone."""
    runs: tuple[SlotRun, ...]

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(slot for run in self.runs for slot in run.slots)


def utc_day(instant: float) -> date:
    return datetime.fromtimestamp(instant, UTC).date()


def utc_days(lo: float, hi: float) -> list[date]:
    """The UTC days that instants in ``[lo, hi)`` fall on (``lo < hi``)."""
    first = utc_day(lo)
    # Slots start on whole seconds, so the last instant that matters is ceil(hi) - 1.
    last = utc_day(math.ceil(hi) - 1)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _next_local_midnight(day: date, zone: tzinfo) -> float:
    return datetime.combine(day + _ONE_DAY, time(), zone).timestamp()


def group_by_local_date(runs: Iterable[SlotRun], zone: tzinfo) -> list[LocalDay]:
    """Regroup ascending ``runs`` of slots by the local date of each slot's start.

    Works on bucket slices: each run is split only where a local midnight
    falls inside it (found by bisection), so no slot is touched one by one.
    """
    days: list[LocalDay] = []
    parts: list[SlotRun] = []
    current: date | None = None
    boundary = -math.inf
    for run in runs:
        bucket, i, last = run.bucket, run.first, run.last
        while i < last:
            start = bucket.starts[i]
            if start >= boundary:
                if current is not None:
                    days.append(LocalDay(current.isoformat(), tuple(parts)))
                current = datetime.fromtimestamp(start, zone).date()
                boundary = _next_local_midnight(current, zone)
                parts = []
            j = bucket.index_at(boundary, i, last)
            parts.append(SlotRun(bucket, i, j))
            i = j
    if current is not None:
        days.append(LocalDay(current.isoformat(), tuple(parts)))
    return days
