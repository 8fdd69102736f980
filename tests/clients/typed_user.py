"""An integrator's code against the clients' public surface, nothing private.

``mypy --strict`` checks it with the rest of the suite (``assert_type`` pins what
each call returns), and ``test_typed_user.py`` runs it against the real server,
so the types it relies on are the ones the clients really return.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import assert_type
from zoneinfo import ZoneInfo

import grpc

from availability_client import (
    AgentClient,
    AsyncAgentClient,
    AsyncBookingClient,
    Availability,
    AvailabilityError,
    BookingClient,
    Day,
    DeadlineExceeded,
    FieldViolation,
    Freshness,
    InvalidArgument,
    Invalidated,
    NotFound,
    RateLimited,
    Slot,
    Source,
    TlsConfig,
    Unavailable,
)

__all__ = ["agent_turn", "agent_turn_async", "book", "book_async", "describe", "tls_for"]

BERLIN = ZoneInfo("Europe/Berlin")


def describe(availability: Availability, after: datetime) -> str:
    """What the agent says: the first free slot, in words."""
    days = assert_type(availability.days, list[Day])
    freshness = assert_type(availability.freshness, Freshness)
    assert_type(freshness.age, timedelta)
    assert_type(freshness.fetched_at, datetime | None)
    slot = assert_type(availability.first_free(after), Slot | None)
    if slot is None:
        return f"nothing free on the {len(days)} day(s) I looked at"
    assert_type(days[0].date, date)
    assert_type(slot.end, datetime | None)
    seats = "" if slot.seats_remaining is None else f", {slot.seats_remaining} seat(s) left"
    hedge = " (from a stale copy)" if freshness.source is Source.STALE else ""
    return f"{slot.start:%A %d %B at %H:%M}{seats}{hedge}"


def agent_turn(target: str, event_type_id: int, now: datetime, token: str | None = None) -> str:
    with AgentClient(target, token=token) as agent:
        try:
            availability = agent.get_slots(
                event_type_id, now, now + timedelta(days=7), time_zone="Europe/Berlin"
            )
        except InvalidArgument as exc:
            violations = assert_type(exc.violations, tuple[FieldViolation, ...])
            return f"bad request: {exc.field} ({len(violations)} violation(s))"
        except NotFound:
            return "no such event type"
        except (Unavailable, RateLimited, DeadlineExceeded):
            return "I can't look at the calendar just now"
        assert_type(availability, Availability)
        return describe(availability, now)


async def agent_turn_async(
    target: str, event_type_id: int, now: datetime, token: str | None = None
) -> str:
    async with AsyncAgentClient(target, token=token, timeout=2.0) as agent:
        try:
            availability = await agent.get_slots(
                event_type_id, now, now + timedelta(days=7), time_zone=BERLIN, timeout=1.5
            )
        except AvailabilityError as exc:
            code = assert_type(exc.code, grpc.StatusCode)
            return f"failed: {code.name}"
        return describe(availability, now)


def book(target: str, event_type_id: int, start: datetime, end: datetime) -> Invalidated | None:
    """The booking service's path: check last, book at Cal.com, report the booking."""
    with BookingClient(target, timeout=5.0) as booking:
        if not assert_type(booking.is_free(event_type_id, start, end), bool):
            return None
        # (book at Cal.com here)
        done = booking.booking_created(event_type_id, start, end, host_ids=[1])
        assert_type(done.dates, tuple[date, ...])
        assert_type(done.event_type_ids, tuple[int, ...])
        return done


async def book_async(
    target: str, event_type_id: int, start: datetime, end: datetime, moved_to: datetime
) -> Invalidated:
    """Create, move, then cancel a booking, reporting each change."""
    async with AsyncBookingClient(target) as booking:
        length = end - start
        await booking.booking_created(event_type_id, start, end)
        moved = await booking.booking_rescheduled(
            event_type_id, start, end, moved_to, moved_to + length
        )
        results = await asyncio.gather(
            booking.slot_reserved(event_type_id, start, end),
            booking.reservation_released(event_type_id, start, end),
        )
        assert_type(results, tuple[Invalidated, Invalidated])
        await booking.booking_cancelled(event_type_id, moved_to, moved_to + length)
        return moved


def tls_for(ca: bytes, chain: bytes | None = None, key: bytes | None = None) -> TlsConfig:
    return TlsConfig(root_certificates=ca, certificate_chain=chain, private_key=key)
