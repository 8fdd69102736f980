from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from availability.core.buckets import Bucket
from availability.core.local_days import SlotRun, group_by_local_date, utc_days
from availability.core.slots import Slot


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def grouped(starts: list[str], zone: str) -> list[tuple[str, int]]:
    # Split the slots over two buckets, as the cache hands them over.
    slots = tuple(Slot(at(s), None) for s in starts)
    half = len(slots) // 2
    runs = [
        SlotRun(Bucket(0, 1, 0, slots[:half]), 0, half),
        SlotRun(Bucket(0, 1, 0, slots[half:]), 0, len(slots) - half),
    ]
    days = group_by_local_date(runs, ZoneInfo(zone))
    assert [s for d in days for s in d.slots] == list(slots)
    return [(d.date, len(d.slots)) for d in days]


def test_utc_days_end_exclusive_at_midnight() -> None:
    lo = at("2026-11-24T10:00:00+00:00")
    assert utc_days(lo, at("2026-11-25T00:00:00+00:00")) == [date(2026, 11, 24)]
    assert utc_days(lo, at("2026-11-25T00:00:01+00:00")) == [date(2026, 11, 24), date(2026, 11, 25)]


def test_utc_days_with_fractional_bounds() -> None:
    lo = datetime(2026, 11, 24, 23, 59, 59, 500000, tzinfo=UTC).timestamp()
    assert utc_days(lo, lo + 0.25) == [date(2026, 11, 24)]


def test_berlin_spring_forward_day_has_23_hours() -> None:
    # 2026-03-29: Berlin goes from +01:00 to +02:00 at 01:00 UTC.
    starts = [
        "2026-03-28T22:59:00+00:00",  # 23:59 on the 28th in Berlin
        "2026-03-28T23:00:00+00:00",  # 00:00 on the 29th
        "2026-03-29T21:59:00+00:00",  # 23:59 on the 29th (+02:00)
        "2026-03-29T22:00:00+00:00",  # 00:00 on the 30th
    ]
    assert grouped(starts, "Europe/Berlin") == [
        ("2026-03-28", 1),
        ("2026-03-29", 2),
        ("2026-03-30", 1),
    ]


def test_berlin_fall_back_day_has_25_hours() -> None:
    # 2026-10-25: Berlin goes from +02:00 to +01:00 at 01:00 UTC.
    starts = [
        "2026-10-24T22:00:00+00:00",  # 00:00 on the 25th (+02:00)
        "2026-10-25T00:30:00+00:00",  # 02:30 first pass
        "2026-10-25T01:30:00+00:00",  # 02:30 second pass
        "2026-10-25T22:59:00+00:00",  # 23:59 on the 25th (+01:00)
        "2026-10-25T23:00:00+00:00",  # 00:00 on the 26th
    ]
    assert grouped(starts, "Europe/Berlin") == [("2026-10-25", 4), ("2026-10-26", 1)]


def test_gaps_between_days_skip_empty_dates() -> None:
    starts = ["2026-11-23T09:00:00+00:00", "2026-11-26T09:00:00+00:00"]
    assert grouped(starts, "UTC") == [("2026-11-23", 1), ("2026-11-26", 1)]


def test_zone_where_midnight_does_not_exist() -> None:
    # America/Santiago springs forward at 24:00 -> 01:00 on 2026-09-06 (04:00 UTC).
    starts = ["2026-09-06T03:59:00+00:00", "2026-09-06T04:00:00+00:00"]
    assert grouped(starts, "America/Santiago") == [("2026-09-05", 1), ("2026-09-06", 1)]
