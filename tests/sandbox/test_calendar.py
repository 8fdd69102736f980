"""The fake calendar is the truth the service is compared against, so it is tested directly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.core.clock import ManualClock
from availability.core.slots import Seats, Slot
from availability.sandbox.calendar import (
    EventType,
    Host,
    InvalidDuration,
    SandboxCalendar,
    SlotUnavailable,
    Team,
    UnknownBooking,
    UnknownEventType,
    default_calendar,
)

__all__: list[str] = []


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


NOW = ts(2026, 11, 23, 6)  # Monday 06:00 UTC


def utc_day(
    calendar: SandboxCalendar, event_type: int, y: int, m: int, d: int, *, duration: int = 0
) -> list[Slot]:
    """The slots starting on one UTC day."""
    return calendar.slots(event_type, ts(y, m, d), ts(y, m, d) + 86399, duration_minutes=duration)


def hhmm(slots: list[Slot]) -> list[str]:
    return [datetime.fromtimestamp(s.start, UTC).strftime("%d %H:%M") for s in slots]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def cal(clock: ManualClock) -> SandboxCalendar:
    return default_calendar(clock)


def test_berlin_host_works_nine_to_five_local_which_is_eight_to_four_utc(
    cal: SandboxCalendar,
) -> None:
    slots = utc_day(cal, 1001, 2026, 11, 24)
    assert len(slots) == 16
    assert slots[0] == Slot(ts(2026, 11, 24, 8), ts(2026, 11, 24, 8, 30))
    assert slots[-1].start == ts(2026, 11, 24, 15, 30)
    assert [s.start for s in utc_day(cal, 1002, 2026, 11, 24)] == [
        ts(2026, 11, 24, h) for h in range(8, 16)
    ]


def test_hosts_in_other_zones(cal: SandboxCalendar) -> None:
    # Kolkata (UTC+05:30) 10-13 and 14-18 local: two windows, aligned to their starts.
    consult = hhmm(utc_day(cal, 1003, 2026, 11, 24))
    assert consult[:7] == [
        "24 04:30",
        "24 05:00",
        "24 05:30",
        "24 06:00",
        "24 06:30",
        "24 07:00",
        "24 08:30",
    ]
    assert consult[-1] == "24 12:00"
    assert len(consult) == 6 + 8
    # New York (UTC-5 in November).
    assert hhmm(utc_day(cal, 1004, 2026, 11, 24))[0] == "24 14:00"
    # Sydney (UTC+11): Tuesday's 09:00 is Monday 22:00 UTC; Wednesday's starts Tuesday 22:00.
    catch_up = hhmm(utc_day(cal, 1007, 2026, 11, 24))
    assert catch_up[:2] == ["24 00:00", "24 00:30"]
    assert catch_up[11:] == ["24 05:30", "24 22:00", "24 22:30", "24 23:00", "24 23:30"]


def test_weekends_are_off(cal: SandboxCalendar) -> None:
    assert utc_day(cal, 1001, 2026, 11, 28) == []
    assert utc_day(cal, 1001, 2026, 11, 29) == []
    # Sydney's Monday begins on Sunday UTC.
    assert hhmm(utc_day(cal, 1007, 2026, 11, 29))[0] == "29 22:00"


def test_multi_duration_steps_by_the_chosen_duration(cal: SandboxCalendar) -> None:
    assert len(utc_day(cal, 1003, 2026, 11, 24, duration=15)) == 12 + 16
    sixty = utc_day(cal, 1003, 2026, 11, 24, duration=60)
    assert hhmm(sixty) == [
        "24 04:30",
        "24 05:30",
        "24 06:30",
        "24 08:30",
        "24 09:30",
        "24 10:30",
        "24 11:30",
    ]
    assert all(s.end is not None and s.end - s.start == 3600 for s in sixty)
    assert utc_day(cal, 1003, 2026, 11, 24, duration=30) == utc_day(cal, 1003, 2026, 11, 24)
    with pytest.raises(InvalidDuration):
        utc_day(cal, 1003, 2026, 11, 24, duration=45)
    with pytest.raises(InvalidDuration):
        utc_day(cal, 1001, 2026, 11, 24, duration=60)


def test_berlin_dst_days_are_shorter_and_longer() -> None:
    sunday_night = {6: [("01:00", "04:00")]}
    cal = SandboxCalendar(
        ManualClock(ts(2026, 3, 1)),
        hosts=[Host(1, "owl", "Europe/Berlin", sunday_night)],
        event_types=[EventType(1, "night", "Night", 30, (1,))],
    )
    # 29 March: 02:00 CET jumps to 03:00 CEST, so 01:00-04:00 local is two hours.
    assert hhmm(cal.slots(1, ts(2026, 3, 28, 12), ts(2026, 3, 29, 12))) == [
        "29 00:00",
        "29 00:30",
        "29 01:00",
        "29 01:30",
    ]
    # 25 October: 03:00 CEST falls back to 02:00 CET, so the same hours last four.
    october = cal.slots(1, ts(2026, 10, 24, 12), ts(2026, 10, 25, 12))
    assert len(october) == 8
    assert (october[0].start, october[-1].start) == (ts(2026, 10, 24, 23), ts(2026, 10, 25, 2, 30))


def test_weekday_hours_move_in_utc_across_dst() -> None:
    cal = default_calendar(ManualClock(ts(2026, 3, 1)))
    assert utc_day(cal, 1001, 2026, 3, 27)[0].start == ts(2026, 3, 27, 8)  # Friday, CET
    assert utc_day(cal, 1001, 2026, 3, 30)[0].start == ts(2026, 3, 30, 7)  # Monday, CEST
    assert utc_day(cal, 1001, 2026, 10, 23)[0].start == ts(2026, 10, 23, 7)
    assert utc_day(cal, 1001, 2026, 10, 26)[0].start == ts(2026, 10, 26, 8)


def test_range_bounds_are_inclusive(cal: SandboxCalendar) -> None:
    slots = cal.slots(1001, ts(2026, 11, 24, 9), ts(2026, 11, 24, 10))
    assert hhmm(slots) == ["24 09:00", "24 09:30", "24 10:00"]
    assert cal.slots(1001, ts(2026, 11, 24, 9, 1), ts(2026, 11, 24, 9, 29)) == []
    assert cal.slots(1001, ts(2026, 11, 24, 10), ts(2026, 11, 24, 9)) == []


def test_past_slots_and_minimum_notice_are_excluded(
    cal: SandboxCalendar, clock: ManualClock
) -> None:
    clock.set(ts(2026, 11, 23, 10, 10))
    assert hhmm(utc_day(cal, 1001, 2026, 11, 23))[0] == "23 10:30"
    cal.add_event_type(EventType(2001, "notice", "Notice", 30, (1,), minimum_notice_minutes=120))
    assert hhmm(utc_day(cal, 2001, 2026, 11, 23))[0] == "23 12:30"
    clock.set(ts(2026, 11, 23, 10, 30))
    assert hhmm(utc_day(cal, 1001, 2026, 11, 23))[0] == "23 10:30"  # starting now still counts
    with pytest.raises(SlotUnavailable):
        cal.book(2001, ts(2026, 11, 23, 12))


def test_a_booking_blocks_the_host_across_all_event_types(cal: SandboxCalendar) -> None:
    before = {et: utc_day(cal, et, 2026, 11, 24) for et in cal.event_types}
    booking = cal.book(1001, ts(2026, 11, 24, 14, 30))
    after = {et: utc_day(cal, et, 2026, 11, 24) for et in cal.event_types}
    lost = {et: hhmm([s for s in before[et] if s not in after[et]]) for et in before}
    assert lost == {
        1001: ["24 14:30"],
        1002: ["24 14:00"],  # 14:00-15:00 overlaps 14:30-15:00
        1003: [],
        1004: [],
        1005: ["24 14:30"],  # alice is a member of the collective team type
        1006: [],
        1007: [],
    }
    assert [et.id for et in cal.event_types_of_host(1)] == [1001, 1002, 1005]
    cal.cancel(booking.uid)
    assert {et: utc_day(cal, et, 2026, 11, 24) for et in cal.event_types} == before


def test_collective_team_type_needs_every_host_working_and_free(cal: SandboxCalendar) -> None:
    # Berlin 08-16 UTC and New York 14-22 UTC overlap 14:00-16:00.
    assert hhmm(utc_day(cal, 1005, 2026, 11, 24)) == [
        "24 14:00",
        "24 14:30",
        "24 15:00",
        "24 15:30",
    ]
    cal.book(1004, ts(2026, 11, 24, 15))  # bob's seated workshop 15:00-16:00
    assert hhmm(utc_day(cal, 1005, 2026, 11, 24)) == ["24 14:00", "24 14:30"]
    booking = cal.book(1005, ts(2026, 11, 24, 14))
    assert booking.host_ids == (1, 2)
    assert ts(2026, 11, 24, 14) not in {s.start for s in utc_day(cal, 1002, 2026, 11, 24)}
    assert ts(2026, 11, 24, 14) not in {s.start for s in utc_day(cal, 1004, 2026, 11, 24)}


def test_seated_slot_stays_offered_until_full(cal: SandboxCalendar) -> None:
    start = ts(2026, 11, 24, 14)

    def seats() -> Seats | None:
        slot = next((s for s in utc_day(cal, 1004, 2026, 11, 24) if s.start == start), None)
        return None if slot is None else slot.seats

    assert seats() == Seats(total=3, booked=0, remaining=3, booking_uid=None)
    first = cal.book(1004, start)
    assert seats() == Seats(3, 1, 2, first.uid)
    cal.book(1004, start)
    assert seats() == Seats(3, 2, 1, first.uid)
    third = cal.book(1004, start)
    assert seats() is None
    with pytest.raises(SlotUnavailable):
        cal.book(1004, start)
    cal.cancel(third.uid)
    assert seats() == Seats(3, 2, 1, first.uid)


def test_never_available_event_type_has_no_slots(cal: SandboxCalendar) -> None:
    assert cal.slots(1006, NOW, NOW + 14 * 86400) == []


def test_booking_refuses_slots_that_are_not_offered(
    cal: SandboxCalendar, clock: ManualClock
) -> None:
    for bad in (ts(2026, 11, 28, 10), ts(2026, 11, 24, 9, 10), ts(2026, 11, 24, 20)):
        with pytest.raises(SlotUnavailable):
            cal.book(1001, bad)
    cal.book(1001, datetime(2026, 11, 24, 10, tzinfo=UTC))
    with pytest.raises(SlotUnavailable):
        cal.book(1001, ts(2026, 11, 24, 10))
    clock.set(ts(2026, 11, 24, 11))
    with pytest.raises(SlotUnavailable):
        cal.book(1001, ts(2026, 11, 24, 10, 30))
    with pytest.raises(UnknownEventType):
        cal.book(9999, ts(2026, 11, 24, 12))
    with pytest.raises(ValueError, match="naive"):
        cal.book(1001, datetime(2026, 11, 24, 12))


def test_multi_duration_booking_blocks_its_chosen_length(cal: SandboxCalendar) -> None:
    booking = cal.book(1003, ts(2026, 11, 24, 8, 30), duration_minutes=60)
    assert booking.end - booking.start == 3600
    assert "24 09:00" not in hhmm(utc_day(cal, 1003, 2026, 11, 24, duration=15))
    assert "24 09:30" in hhmm(utc_day(cal, 1003, 2026, 11, 24, duration=15))


def test_cancel(cal: SandboxCalendar) -> None:
    booking = cal.book(1001, ts(2026, 11, 24, 9))
    cancelled = cal.cancel(booking.uid)
    assert (cancelled.status, cal.booking(booking.uid).status) == ("cancelled", "cancelled")
    with pytest.raises(UnknownBooking):
        cal.cancel(booking.uid)
    with pytest.raises(UnknownBooking):
        cal.cancel("no-such-uid")
    assert cal.book(1001, ts(2026, 11, 24, 9)).uid != booking.uid


def test_reschedule_moves_the_booking_under_a_new_uid(cal: SandboxCalendar) -> None:
    old = cal.book(1002, ts(2026, 11, 24, 9))
    assert old.start not in {s.start for s in utc_day(cal, 1002, 2026, 11, 24)}
    freed = cal.slots(1002, ts(2026, 11, 24), ts(2026, 11, 24, 23), reschedule_uid=old.uid)
    assert old.start in {s.start for s in freed}
    with pytest.raises(SlotUnavailable):
        cal.reschedule(old.uid, ts(2026, 11, 28, 9))
    assert cal.booking(old.uid).active
    new = cal.reschedule(old.uid, ts(2026, 11, 24, 11))
    assert new.uid != old.uid
    assert new.reschedule_uid == old.uid
    assert (new.start, new.end) == (ts(2026, 11, 24, 11), ts(2026, 11, 24, 12))
    assert cal.booking(old.uid).status == "cancelled"
    starts = {s.start for s in utc_day(cal, 1002, 2026, 11, 24)}
    assert old.start in starts
    assert new.start not in starts
    with pytest.raises(UnknownBooking):
        cal.reschedule(old.uid, ts(2026, 11, 24, 12))


def test_rescheduling_onto_its_own_time_is_allowed(cal: SandboxCalendar) -> None:
    old = cal.book(1003, ts(2026, 11, 24, 8, 30), duration_minutes=60)
    new = cal.reschedule(old.uid, old.start)
    assert (new.start, new.end, new.reschedule_uid) == (old.start, old.end, old.uid)


def test_mutations_are_deterministic() -> None:
    def run() -> list[str]:
        cal = default_calendar(ManualClock(NOW))
        a = cal.book(1001, ts(2026, 11, 24, 9))
        b = cal.reschedule(a.uid, ts(2026, 11, 24, 10))
        cal.cancel(b.uid)
        return [repr(x) for x in cal.bookings]

    assert run() == run()


def test_lookups_by_slug(cal: SandboxCalendar) -> None:
    assert cal.event_type_by_slug("intro-30", username="alice").id == 1001
    assert cal.event_type_by_slug("sales-sync", team_slug="sales-team").id == 1005
    with pytest.raises(UnknownEventType):
        cal.event_type_by_slug("intro-30", username="bob")
    with pytest.raises(UnknownEventType):
        cal.event_type_by_slug("sales-sync", username="alice")


def test_dynamic_event_over_usernames_is_collective(cal: SandboxCalendar) -> None:
    dynamic = EventType(0, "dynamic", "Dynamic", 30, (1, 2))
    assert cal.slots(dynamic, NOW, NOW + 3 * 86400) == cal.slots(1005, NOW, NOW + 3 * 86400)


def test_setup_is_validated(cal: SandboxCalendar) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        Host(9, "x", "UTC", {0: [("9:00", "17:00")]})
    with pytest.raises(ValueError, match="overnight"):
        Host(9, "x", "UTC", {0: [("17:00", "09:00")]})
    with pytest.raises(ValueError, match="weekday"):
        Host(9, "x", "UTC", {7: [("09:00", "17:00")]})
    with pytest.raises(KeyError):  # zoneinfo's ZoneInfoNotFoundError
        Host(9, "x", "Mars/Olympus", {})
    with pytest.raises(ValueError, match="include"):
        EventType(9, "x", "X", 30, (1,), length_options=(15, 60))
    with pytest.raises(ValueError, match="duplicate"):
        cal.add_host(Host(99, "alice", "UTC", {}))
    with pytest.raises(ValueError, match="duplicate"):
        cal.add_team(Team(501, "again", "Again"))
    with pytest.raises(ValueError, match="unknown"):
        cal.add_event_type(EventType(9, "x", "X", 30, (42,)))


def test_hours_may_end_at_midnight() -> None:
    cal = SandboxCalendar(
        ManualClock(NOW),
        hosts=[Host(1, "late", "UTC", {1: [("23:00", "24:00")]})],
        event_types=[EventType(1, "late", "Late", 30, (1,))],
    )
    assert hhmm(utc_day(cal, 1, 2026, 11, 24)) == ["24 23:00", "24 23:30"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1001, 1002, 1003, 1004, 1005, 1007]), st.integers(0, 200)),
        max_size=12,
    )
)
def test_offered_slots_never_overlap_a_hosts_other_bookings(
    attempts: list[tuple[int, int]],
) -> None:
    cal = default_calendar(ManualClock(NOW))
    start, end = ts(2026, 11, 24), ts(2026, 11, 25, 23, 59)
    for event_type, pick in attempts:
        offered = cal.slots(event_type, start, end)
        if offered:
            cal.book(event_type, offered[pick % len(offered)].start)
    active = [b for b in cal.bookings if b.active]
    for et in cal.event_types.values():
        for slot in cal.slots(et.id, start, end):
            assert slot.end is not None
            for b in active:
                shares_host = set(b.host_ids) & set(et.host_ids)
                same_seat = et.seats_per_slot is not None and b.event_type_id == et.id
                if shares_host and b.start < slot.end and slot.start < b.end:
                    assert same_seat
                    assert b.start == slot.start
