"""The returned types on their own: walking an answer, and merging two invalidations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from availability_client import Availability, Day, Freshness, Invalidated, Slot, Source

HOUR = timedelta(hours=1)


def answer(*starts: datetime) -> Availability:
    days: dict[date, list[Slot]] = {}
    for start in starts:
        days.setdefault(start.date(), []).append(Slot(start, start + HOUR / 2))
    return Availability(
        [Day(day, slots) for day, slots in days.items()],
        Freshness(Source.CACHE, timedelta(0), None),
    )


def test_slots_in_order_and_the_first_free_after_a_moment() -> None:
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    got = answer(monday, monday + HOUR, monday + timedelta(days=1))
    assert [s.start for s in got.slots()] == [monday, monday + HOUR, monday + timedelta(days=1)]
    assert got.first_free(monday) == got.days[0].slots[0]  # "at or after"
    assert got.first_free(monday + timedelta(minutes=1)) == got.days[0].slots[1]
    assert got.first_free(monday + 2 * HOUR) == got.days[1].slots[0]
    assert got.first_free(monday + timedelta(days=2)) is None


def test_first_free_defaults_to_now() -> None:
    # Real time on purpose (the default is the wall clock), with hours of margin either side.
    now = datetime.now(UTC)
    got = answer(now - 2 * HOUR, now + 2 * HOUR, now + 3 * HOUR)
    assert got.first_free() == Slot(now + 2 * HOUR, now + 2 * HOUR + HOUR / 2)


def test_first_free_refuses_a_naive_moment() -> None:
    with pytest.raises(ValueError, match="after must be a timezone-aware"):
        answer().first_free(datetime(2026, 11, 23, 9, 0))


def test_invalidations_merge() -> None:
    tuesday = Invalidated((date(2026, 11, 24),), False, (1001, 1002), (1,), False)
    wednesday = Invalidated((date(2026, 11, 25), date(2026, 11, 24)), False, (1003,), (2,), False)
    assert tuesday.merged(wednesday) == Invalidated(
        (date(2026, 11, 24), date(2026, 11, 25)), False, (1001, 1002, 1003), (1, 2), False
    )
    every_day = Invalidated((), True, (1001,), (1,), False)
    assert tuesday.merged(every_day) == Invalidated((), True, (1001, 1002), (1,), False)
