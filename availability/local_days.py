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

from availability.slots import Slot

__all__ = ["LocalDay", "group_by_local_date", "utc_day", "utc_day_start", "utc_days"]

_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LocalDay:
    date: str
    """YYYY-MM-DD in the caller's time zone."""
    slots: tuple[Slot, ...]


def utc_day(instant: float) -> date:
    return datetime.fromtimestamp(instant, UTC).date()


def utc_day_start(day: date) -> float:
    return datetime.combine(day, time(), UTC).timestamp()


def utc_days(lo: float, hi: float) -> list[date]:
    """The UTC days that instants in ``[lo, hi)`` fall on (``lo < hi``)."""
    first = utc_day(lo)
    # Slots start on whole seconds, so the last instant that matters is ceil(hi) - 1.
    last = utc_day(math.ceil(hi) - 1)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _next_local_midnight(day: date, zone: tzinfo) -> float:
    return datetime.combine(day + _ONE_DAY, time(), zone).timestamp()


def group_by_local_date(slots: Iterable[Slot], zone: tzinfo) -> list[LocalDay]:
    """Group ascending ``slots`` by the local date of their start in ``zone``."""
    days: list[LocalDay] = []
    current: list[Slot] = []
    current_date: date | None = None
    boundary = -math.inf
    for slot in slots:
        if slot.start >= boundary:
            if current_date is not None:
                days.append(LocalDay(current_date.isoformat(), tuple(current)))
            current_date = datetime.fromtimestamp(slot.start, zone).date()
            boundary = _next_local_midnight(current_date, zone)
            current = []
        current.append(slot)
    if current_date is not None:
        days.append(LocalDay(current_date.isoformat(), tuple(current)))
    return days
