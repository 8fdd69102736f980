"""The sandbox's fake calendar: the single source of truth for which slots exist.

Pure and synchronous on purpose: the HTTP app, the integration tests and the
state-machine test all ask *this* object what Cal.com would answer, so it must
be deterministic. It never reads the real time, only the injected clock, and
it knows nothing about HTTP.

Modelled Cal.com behaviour:

* Working hours are local times in each host's own IANA zone, so DST shifts
  the UTC slots (and a DST day is an hour shorter or longer).
* A booking blocks its hosts' time across *all* their event types.
* Team event types are collective: a slot needs every host free and working.
* Seated event types keep a slot offered until its seats are full; each seat
  is its own :class:`Booking` here (Cal.com adds attendees to one booking, and
  reports that booking's uid, which here is the uid of the slot's first seat).
* Slots step by their duration from the start of each working window.

``default_calendar(clock)`` (weekends off everywhere, hours Mon-Fri local)::

    host  username  zone              hours (local)
    1     alice     Europe/Berlin     09:00-17:00
    2     bob       America/New_York  09:00-17:00
    3     chandra   Asia/Kolkata      10:00-13:00, 14:00-18:00   (UTC+05:30)
    4     dana      Australia/Sydney  09:00-17:00                (Monday starts on Sunday UTC)
    5     erin      Europe/London     none                       (never available)

    event type  slug         host(s)                 length (min)
    1001        intro-30     alice                   30
    1002        deep-dive    alice                   60          (shares alice's calendar with 1001)
    1003        consult      chandra                 15/30/60, default 30
    1004        workshop     bob                     60, 3 seats per slot
    1005        sales-sync   team 501 "sales-team":  30, collective: 14:00-16:00 UTC in
                             alice + bob                 November (both working)
    1006        office-hrs   erin                    30, never available
    1007        catch-up     dana                    30
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

from availability.core.clock import Clock
from availability.core.slots import Seats, Slot

__all__ = [
    "Booking",
    "BookingStatus",
    "EventType",
    "Host",
    "InvalidDuration",
    "SandboxCalendar",
    "SandboxError",
    "SlotUnavailable",
    "Team",
    "UnknownBooking",
    "UnknownEventType",
    "default_calendar",
]

BookingStatus = Literal["accepted", "cancelled"]
Interval = tuple[int, int]


class SandboxError(Exception):
    """Base class for refusals of the fake calendar."""


class UnknownEventType(SandboxError, LookupError):
    """No such event type (Cal.com: 404)."""


class UnknownBooking(SandboxError, LookupError):
    """No such booking, or it is already cancelled."""


class InvalidDuration(SandboxError, ValueError):
    """The duration is not one the event type offers (Cal.com: 400)."""


class SlotUnavailable(SandboxError):
    """The requested start is not currently offered, so it cannot be booked."""


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    value = int(hours) * 60 + int(minutes)
    if not (len(hhmm) == 5 and 0 <= int(minutes) < 60 and 0 <= value <= 24 * 60):
        raise ValueError(f"not a HH:MM time of day: {hhmm!r}")
    return value


@dataclass(frozen=True, slots=True)
class Host:
    """A Cal.com user. ``weekly_hours`` maps weekday (0 = Monday) to local windows."""

    id: int
    username: str
    time_zone: str
    weekly_hours: Mapping[int, Sequence[tuple[str, str]]]
    name: str = ""

    def __post_init__(self) -> None:
        ZoneInfo(self.time_zone)  # fail at construction, not in the middle of a request
        for weekday, windows in self.weekly_hours.items():
            if not 0 <= weekday <= 6:
                raise ValueError(f"weekday must be 0..6, got {weekday}")
            for start, end in windows:
                if _minutes(start) >= _minutes(end):
                    raise ValueError(f"empty or overnight window {start}-{end}")

    @property
    def display_name(self) -> str:
        return self.name or self.username.capitalize()

    def working_windows(self, day: date) -> list[Interval]:
        """The host's working windows on local ``day`` as UTC epoch intervals, merged."""
        zone = ZoneInfo(self.time_zone)
        windows = sorted(
            (_local_epoch(day, _minutes(start), zone), _local_epoch(day, _minutes(end), zone))
            for start, end in self.weekly_hours.get(day.weekday(), ())
        )
        merged: list[Interval] = []
        for lo, hi in windows:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged


def _local_epoch(day: date, minutes: int, zone: ZoneInfo) -> int:
    day += timedelta(days=minutes // (24 * 60))
    minutes %= 24 * 60
    return int(datetime.combine(day, time(minutes // 60, minutes % 60), zone).timestamp())


@dataclass(frozen=True, slots=True)
class Team:
    id: int
    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class EventType:
    """An event type. Several ``host_ids`` make it a collective team event type."""

    id: int
    slug: str
    title: str
    length_minutes: int
    host_ids: tuple[int, ...]
    length_options: tuple[int, ...] = ()
    seats_per_slot: int | None = None
    minimum_notice_minutes: int = 0
    team_id: int | None = None

    def __post_init__(self) -> None:
        if not self.host_ids:
            raise ValueError(f"event type {self.id} has no hosts")
        if self.length_minutes <= 0 or any(m <= 0 for m in self.length_options):
            raise ValueError("lengths must be positive")
        if self.length_options and self.length_minutes not in self.length_options:
            raise ValueError("length_options must include length_minutes (Cal.com rule)")
        if self.seats_per_slot is not None and self.seats_per_slot < 1:
            raise ValueError("seats_per_slot must be at least 1")

    @property
    def durations(self) -> tuple[int, ...]:
        """The durations a caller may ask for; 0 (no choice) means ``length_minutes``."""
        return self.length_options or (self.length_minutes,)


@dataclass(frozen=True, slots=True)
class Booking:
    """A booking; cancelled ones stay in the calendar so uids remain resolvable."""

    uid: str
    event_type_id: int
    start: int
    end: int
    host_ids: tuple[int, ...]
    status: BookingStatus = "accepted"
    id: int = 0
    created_at: int = 0
    reschedule_uid: str | None = None
    """For a booking made by rescheduling: the uid of the booking it replaced."""

    @property
    def active(self) -> bool:
        return self.status != "cancelled"


class SandboxCalendar:
    """Hosts, teams, event types and bookings, and the slots they leave open."""

    def __init__(
        self,
        clock: Clock,
        hosts: Iterable[Host] = (),
        event_types: Iterable[EventType] = (),
        teams: Iterable[Team] = (),
    ) -> None:
        self.clock = clock
        self._hosts: dict[int, Host] = {}
        self._teams: dict[int, Team] = {}
        self._event_types: dict[int, EventType] = {}
        self._bookings: dict[str, Booking] = {}
        for host in hosts:
            self.add_host(host)
        for team in teams:
            self.add_team(team)
        for event_type in event_types:
            self.add_event_type(event_type)

    # -- setup -------------------------------------------------------------

    def add_host(self, host: Host) -> None:
        if host.id in self._hosts or self.host_by_username(host.username) is not None:
            raise ValueError(f"duplicate host {host.id}/{host.username}")
        self._hosts[host.id] = host

    def add_team(self, team: Team) -> None:
        if team.id in self._teams:
            raise ValueError(f"duplicate team {team.id}")
        self._teams[team.id] = team

    def add_event_type(self, event_type: EventType) -> None:
        if event_type.id in self._event_types:
            raise ValueError(f"duplicate event type {event_type.id}")
        missing = [h for h in event_type.host_ids if h not in self._hosts]
        if missing or (event_type.team_id is not None and event_type.team_id not in self._teams):
            raise ValueError(f"event type {event_type.id} refers to unknown hosts/team")
        self._event_types[event_type.id] = event_type

    # -- lookups -----------------------------------------------------------

    @property
    def hosts(self) -> Mapping[int, Host]:
        return MappingProxyType(self._hosts)

    @property
    def teams(self) -> Mapping[int, Team]:
        return MappingProxyType(self._teams)

    @property
    def event_types(self) -> Mapping[int, EventType]:
        return MappingProxyType(self._event_types)

    @property
    def bookings(self) -> tuple[Booking, ...]:
        """Every booking ever made, cancelled ones included, in creation order."""
        return tuple(self._bookings.values())

    def event_type(self, event_type_id: int) -> EventType:
        try:
            return self._event_types[event_type_id]
        except KeyError:
            raise UnknownEventType(f"event type {event_type_id} not found") from None

    def booking(self, uid: str) -> Booking:
        try:
            return self._bookings[uid]
        except KeyError:
            raise UnknownBooking(f"booking {uid} not found") from None

    def host_by_username(self, username: str) -> Host | None:
        return next((h for h in self._hosts.values() if h.username == username), None)

    def event_type_by_slug(
        self, slug: str, *, username: str | None = None, team_slug: str | None = None
    ) -> EventType:
        """Cal.com's slug lookups: a user's own event type, or a team's."""
        for et in self._event_types.values():
            if et.team_id is None:
                owner = self._hosts[et.host_ids[0]].username if len(et.host_ids) == 1 else None
                owned = username is not None and owner == username
            else:
                owned = team_slug is not None and self._teams[et.team_id].slug == team_slug
            if et.slug == slug and owned:
                return et
        whose = f"user {username}" if username is not None else f"team {team_slug}"
        raise UnknownEventType(f"event type {slug!r} of {whose} not found")

    def event_types_of_host(self, host_id: int) -> list[EventType]:
        """The event types a booking of ``host_id`` can affect."""
        return [et for et in self._event_types.values() if host_id in et.host_ids]

    # -- availability ------------------------------------------------------

    def slots(
        self,
        event_type: int | EventType,
        start_utc: int,
        end_utc: int,
        *,
        duration_minutes: int = 0,
        reschedule_uid: str | None = None,
    ) -> list[Slot]:
        """Offered slots with a start in ``[start_utc, end_utc]`` (both inclusive), ascending.

        ``event_type`` may be an unregistered :class:`EventType` over known hosts
        (Cal.com's dynamic ``usernames=`` events). ``reschedule_uid``'s booking
        does not block, so its own time shows as free (``bookingUidToReschedule``).
        """
        et = event_type if isinstance(event_type, EventType) else self.event_type(event_type)
        length = self._duration(et, duration_minutes) * 60
        earliest = max(start_utc, math.ceil(self.clock() + et.minimum_notice_minutes * 60))
        busy = [
            b
            for b in self._bookings.values()
            if b.active and b.uid != reschedule_uid and set(b.host_ids) & set(et.host_ids)
        ]
        result: list[Slot] = []
        for lo, hi in self._shared_windows(et.host_ids, start_utc, end_utc):
            for start in range(lo, hi - length + 1, length):
                if earliest <= start <= end_utc:
                    slot = self._offer(et, start, start + length, busy)
                    if slot is not None:
                        result.append(slot)
        return result

    def _duration(self, et: EventType, duration_minutes: int) -> int:
        if duration_minutes == 0:
            return et.length_minutes
        if duration_minutes not in et.durations:
            raise InvalidDuration(
                f"duration {duration_minutes} is not one of event type {et.id}'s "
                f"lengths {list(et.durations)}"
            )
        return duration_minutes

    def _shared_windows(
        self, host_ids: Sequence[int], start_utc: int, end_utc: int
    ) -> list[Interval]:
        """Intervals when every host works; local days padded by one for zone offsets."""
        first = datetime.fromtimestamp(start_utc, UTC).date() - timedelta(days=1)
        last = datetime.fromtimestamp(max(start_utc, end_utc), UTC).date() + timedelta(days=1)
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        shared: list[Interval] | None = None
        for host_id in host_ids:
            host = self._hosts[host_id]
            windows = [w for day in days for w in host.working_windows(day)]
            shared = windows if shared is None else _intersect(shared, windows)
        return shared or []

    @staticmethod
    def _offer(et: EventType, start: int, end: int, busy: Iterable[Booking]) -> Slot | None:
        seats: list[Booking] = []
        for b in busy:
            if b.start < end and start < b.end:
                if et.seats_per_slot is not None and b.event_type_id == et.id and b.start == start:
                    seats.append(b)
                else:
                    return None
        if et.seats_per_slot is None:
            return Slot(start, end)
        if len(seats) >= et.seats_per_slot:
            return None
        first_uid = seats[0].uid if seats else None
        total = et.seats_per_slot
        return Slot(start, end, Seats(total, len(seats), total - len(seats), first_uid))

    # -- mutations ---------------------------------------------------------

    def book(
        self, event_type_id: int, start: datetime | int, *, duration_minutes: int = 0
    ) -> Booking:
        """Book ``start`` if it is offered right now, else raise :class:`SlotUnavailable`."""
        et = self.event_type(event_type_id)
        return self._book(et, _epoch(start), self._duration(et, duration_minutes), None)

    def cancel(self, uid: str) -> Booking:
        booking = self.booking(uid)
        if not booking.active:
            raise UnknownBooking(f"booking {uid} is already cancelled")
        cancelled = replace(booking, status="cancelled")
        self._bookings[uid] = cancelled
        return cancelled

    def reschedule(self, uid: str, new_start: datetime | int) -> Booking:
        """Move a booking: a new uid at ``new_start``; the old one is cancelled."""
        old = self.booking(uid)
        if not old.active:
            raise UnknownBooking(f"booking {uid} is already cancelled")
        et = self.event_type(old.event_type_id)
        new = self._book(et, _epoch(new_start), (old.end - old.start) // 60, old.uid)
        self._bookings[uid] = replace(old, status="cancelled")
        return new

    def _book(self, et: EventType, start: int, minutes: int, replaces: str | None) -> Booking:
        offered = self.slots(et, start, start, duration_minutes=minutes, reschedule_uid=replaces)
        if not offered:
            when = datetime.fromtimestamp(start, UTC).isoformat()
            raise SlotUnavailable(f"{when} ({minutes} min) is not available for event type {et.id}")
        number = len(self._bookings) + 1
        booking = Booking(
            uid=f"sandbox-booking-{number:06d}",
            event_type_id=et.id,
            start=start,
            end=start + minutes * 60,
            host_ids=et.host_ids,
            id=number,
            created_at=int(self.clock()),
            reschedule_uid=replaces,
        )
        self._bookings[booking.uid] = booking
        return booking


def _epoch(start: datetime | int) -> int:
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise ValueError("naive datetime: give a time zone")
        return int(start.timestamp())
    return start


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two sorted lists of disjoint intervals."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


_WEEKDAYS = range(5)


def _weekdays(*windows: tuple[str, str]) -> dict[int, Sequence[tuple[str, str]]]:
    return dict.fromkeys(_WEEKDAYS, windows)


def default_calendar(clock: Clock) -> SandboxCalendar:
    """The fixture set documented in this module's docstring."""
    nine_to_five = _weekdays(("09:00", "17:00"))
    return SandboxCalendar(
        clock,
        hosts=[
            Host(1, "alice", "Europe/Berlin", nine_to_five),
            Host(2, "bob", "America/New_York", nine_to_five),
            Host(3, "chandra", "Asia/Kolkata", _weekdays(("10:00", "13:00"), ("14:00", "18:00"))),
            Host(4, "dana", "Australia/Sydney", nine_to_five),
            Host(5, "erin", "Europe/London", {}),
        ],
        teams=[Team(501, "sales-team", "Sales Team")],
        event_types=[
            EventType(1001, "intro-30", "Intro call", 30, (1,)),
            EventType(1002, "deep-dive", "Deep dive", 60, (1,)),
            EventType(1003, "consult", "Consultation", 30, (3,), length_options=(15, 30, 60)),
            EventType(1004, "workshop", "Group workshop", 60, (2,), seats_per_slot=3),
            EventType(1005, "sales-sync", "Sales sync", 30, (1, 2), team_id=501),
            EventType(1006, "office-hrs", "Office hours", 30, (5,)),
            EventType(1007, "catch-up", "Catch-up", 30, (4,)),
        ],
    )
