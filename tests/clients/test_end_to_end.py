"""Both clients, sync and async, against the real server and the sandbox over loopback.

Each scenario runs twice: with the asyncio clients, and with the sync clients
called from worker threads (the server shares this test's event loop, so a
blocking call on it would wait for itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from availability.sandbox import RunningSandbox
from availability.server import RunningService
from availability_client import (
    AgentClient,
    AsyncAgentClient,
    AsyncBookingClient,
    Availability,
    BookingClient,
    InvalidArgument,
    Invalidated,
    NotFound,
    Source,
)
from tests.conftest import NOW

ALICE_30, ALICE_60, MULTI, BOB_SEATED = 1001, 1002, 1003, 1004
TUESDAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))
TUESDAY_AND_WEDNESDAY = (TUESDAY[0], TUESDAY[1] + timedelta(days=1))
AT_14 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
BERLIN = ZoneInfo("Europe/Berlin")


class ThreadedAgent:
    """An AgentClient's methods, awaited from worker threads."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    async def get_slots(self, *args: Any, **kwargs: Any) -> Availability:
        return await asyncio.to_thread(self.client.get_slots, *args, **kwargs)


class ThreadedBooking:
    """A BookingClient's methods, awaited from worker threads."""

    def __init__(self, client: BookingClient) -> None:
        self.client = client

    async def booking_created(self, *args: Any, **kwargs: Any) -> Invalidated:
        return await asyncio.to_thread(self.client.booking_created, *args, **kwargs)

    async def booking_cancelled(self, *args: Any, **kwargs: Any) -> Invalidated:
        return await asyncio.to_thread(self.client.booking_cancelled, *args, **kwargs)

    async def booking_rescheduled(self, *args: Any, **kwargs: Any) -> Invalidated:
        return await asyncio.to_thread(self.client.booking_rescheduled, *args, **kwargs)

    async def slot_reserved(self, *args: Any, **kwargs: Any) -> Invalidated:
        return await asyncio.to_thread(self.client.slot_reserved, *args, **kwargs)

    async def reservation_released(self, *args: Any, **kwargs: Any) -> Invalidated:
        return await asyncio.to_thread(self.client.reservation_released, *args, **kwargs)

    async def invalidate(self, **kwargs: Any) -> Invalidated:
        return await asyncio.to_thread(self.client.invalidate, **kwargs)

    async def is_free(self, *args: Any, **kwargs: Any) -> bool:
        return await asyncio.to_thread(self.client.is_free, *args, **kwargs)


@dataclass
class Clients:
    agent: AsyncAgentClient | ThreadedAgent
    booking: AsyncBookingClient | ThreadedBooking


@pytest.fixture(params=["async", "sync"])
async def clients(
    request: pytest.FixtureRequest, service: RunningService
) -> AsyncIterator[Clients]:
    if request.param == "async":
        async with (
            AsyncAgentClient(service.target) as agent,
            AsyncBookingClient(service.target) as booking,
        ):
            yield Clients(agent, booking)
        return
    with AgentClient(service.target) as sync_agent, BookingClient(service.target) as sync_booking:
        yield Clients(ThreadedAgent(sync_agent), ThreadedBooking(sync_booking))


def starts(availability: Availability) -> list[datetime]:
    return [slot.start for slot in availability.slots()]


def truth(sandbox: RunningSandbox, event_type_id: int, start: datetime, end: datetime) -> list[int]:
    """The starts Cal.com offers right now in [start, end)."""
    slots = sandbox.calendar.slots(event_type_id, int(start.timestamp()), int(end.timestamp()) - 1)
    return [slot.start for slot in slots]


def epochs(availability: Availability) -> list[int]:
    return [int(start.timestamp()) for start in starts(availability)]


async def test_a_reported_booking_leaves_the_next_read(
    clients: Clients, sandbox: RunningSandbox
) -> None:
    agent, booking = clients.agent, clients.booking
    assert AT_14 in starts(await agent.get_slots(ALICE_30, *TUESDAY))
    assert AT_14 in starts(await agent.get_slots(ALICE_60, *TUESDAY))
    sandbox.calendar.book(ALICE_30, AT_14)
    cached = await agent.get_slots(ALICE_30, *TUESDAY)
    assert cached.freshness.source is Source.CACHE
    assert AT_14 in starts(cached)  # nobody reported it yet: the cache cannot know

    done = await booking.booking_created(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    assert done.dates == (date(2026, 11, 24),)
    assert {ALICE_30, ALICE_60} <= set(done.event_type_ids)  # alice's other event type too
    assert not done.all_dates
    assert not done.everything

    after = await agent.get_slots(ALICE_30, *TUESDAY)
    assert AT_14 not in starts(after)
    assert after.freshness.source is Source.UPSTREAM
    assert epochs(after) == truth(sandbox, ALICE_30, *TUESDAY)
    assert AT_14 not in starts(await agent.get_slots(ALICE_60, *TUESDAY))


async def test_a_reschedule_frees_the_old_slot_and_takes_the_new(
    clients: Clients, sandbox: RunningSandbox
) -> None:
    agent, booking = clients.agent, clients.booking
    first = sandbox.calendar.book(ALICE_30, AT_14)
    await booking.booking_created(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    before = await agent.get_slots(ALICE_30, *TUESDAY_AND_WEDNESDAY)
    wednesday_14 = AT_14 + timedelta(days=1)
    assert AT_14 not in starts(before)
    assert wednesday_14 in starts(before)

    moved = sandbox.calendar.reschedule(first.uid, wednesday_14)
    new_end = datetime.fromtimestamp(moved.end, UTC)
    done = await booking.booking_rescheduled(
        ALICE_30, AT_14, AT_14 + HALF_HOUR, wednesday_14, new_end
    )
    assert done.dates == (date(2026, 11, 24), date(2026, 11, 25))

    after = await agent.get_slots(ALICE_30, *TUESDAY_AND_WEDNESDAY)
    assert AT_14 in starts(after)
    assert wednesday_14 not in starts(after)
    assert epochs(after) == truth(sandbox, ALICE_30, *TUESDAY_AND_WEDNESDAY)


async def test_is_free_sees_a_booking_nobody_reported(
    clients: Clients, sandbox: RunningSandbox
) -> None:
    agent, booking = clients.agent, clients.booking
    await agent.get_slots(ALICE_30, *TUESDAY)
    assert await booking.is_free(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    sandbox.calendar.book(ALICE_60, AT_14, duration_minutes=60)  # alice's time, another type
    cached = await agent.get_slots(ALICE_30, *TUESDAY)
    assert AT_14 in starts(cached)  # the cache still offers it...
    calls = sandbox.requests.calls("/v2/slots")

    assert not await booking.is_free(ALICE_30, AT_14, AT_14 + HALF_HOUR)  # ...Cal.com does not
    assert not await booking.is_free(ALICE_30, AT_14 + HALF_HOUR, AT_14 + 2 * HALF_HOUR)
    assert sandbox.requests.calls("/v2/slots") == calls + 2  # each check asked Cal.com
    later = AT_14 + timedelta(hours=1)
    assert await booking.is_free(ALICE_30, later.astimezone(BERLIN), later + HALF_HOUR)
    assert not await booking.is_free(ALICE_30, later, later + 2 * HALF_HOUR)  # no such length
    chandra = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)  # 15:00 in Kolkata, on the hour grid
    assert await booking.is_free(MULTI, chandra, chandra + 2 * HALF_HOUR, duration_minutes=60)
    assert not await booking.is_free(MULTI, chandra, chandra + 2 * HALF_HOUR)  # 30 min default
    assert not await booking.is_free(ALICE_30, NOW - HALF_HOUR, NOW)  # started already


async def test_a_reservation_holds_a_slot_like_a_booking(
    clients: Clients, sandbox: RunningSandbox
) -> None:
    agent, booking = clients.agent, clients.booking
    await agent.get_slots(ALICE_30, *TUESDAY)
    # The sandbox has no reservations endpoint; a booking blocks the time just as a hold does.
    hold = sandbox.calendar.book(ALICE_30, AT_14)
    await booking.slot_reserved(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    assert AT_14 not in starts(await agent.get_slots(ALICE_30, *TUESDAY))
    sandbox.calendar.cancel(hold.uid)
    await booking.reservation_released(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    assert AT_14 in starts(await agent.get_slots(ALICE_30, *TUESDAY))


async def test_a_cancellation_brings_the_slot_back(
    clients: Clients, sandbox: RunningSandbox
) -> None:
    agent, booking = clients.agent, clients.booking
    made = sandbox.calendar.book(ALICE_30, AT_14)
    await booking.booking_created(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    assert AT_14 not in starts(await agent.get_slots(ALICE_30, *TUESDAY))
    sandbox.calendar.cancel(made.uid)
    await booking.booking_cancelled(ALICE_30, AT_14, AT_14 + HALF_HOUR)
    assert AT_14 in starts(await agent.get_slots(ALICE_30, *TUESDAY))


async def test_days_and_times_in_the_requested_zone(clients: Clients) -> None:
    # Alice works 09:00-17:00 Berlin time: 08:00-16:00 UTC in November.
    for zone in ("Europe/Berlin", BERLIN):
        got = await clients.agent.get_slots(ALICE_30, *TUESDAY, time_zone=zone)
        assert [day.date for day in got.days] == [date(2026, 11, 24)]
        first = got.days[0].slots[0]
        assert first.start.tzinfo == BERLIN
        assert (first.start.hour, first.start.minute) == (9, 0)
        assert first.end == first.start + HALF_HOUR
        assert first.seats_total is None
    assert got.first_free(AT_14) is not None
    assert got.first_free(AT_14.astimezone(BERLIN)) == next(
        s for s in got.slots() if s.start == AT_14
    )


async def test_seats_and_durations(clients: Clients) -> None:
    seated = await clients.agent.get_slots(BOB_SEATED, *TUESDAY)
    first = next(seated.slots())
    assert (first.seats_total, first.seats_remaining, first.seats_booked) == (3, 3, 0)
    long = await clients.agent.get_slots(MULTI, *TUESDAY, duration_minutes=60)
    slot = next(long.slots())
    assert slot.end is not None
    assert slot.end - slot.start == timedelta(hours=1)


async def test_freshness_and_a_range_in_the_past(clients: Clients) -> None:
    cold = await clients.agent.get_slots(ALICE_30, *TUESDAY)
    warm = await clients.agent.get_slots(ALICE_30, *TUESDAY)
    assert cold.freshness.source is Source.UPSTREAM
    assert warm.freshness.source is Source.CACHE
    assert warm.freshness.fetched_at == NOW
    assert warm.freshness.age == timedelta(0)  # the server's clock has not moved
    past = await clients.agent.get_slots(ALICE_30, NOW - timedelta(days=2), NOW - timedelta(days=1))
    assert past.days == []
    assert past.freshness.source is Source.NONE
    assert past.freshness.fetched_at is None


async def test_server_errors_arrive_as_the_tree(clients: Clients) -> None:
    with pytest.raises(NotFound, match="event_type_id"):
        await clients.agent.get_slots(987654, *TUESDAY)
    with pytest.raises(InvalidArgument) as caught:
        await clients.agent.get_slots(ALICE_30, *TUESDAY, duration_minutes=1441)
    assert caught.value.field == "duration_minutes"
    with pytest.raises(InvalidArgument) as caught:
        await clients.agent.get_slots(ALICE_30, TUESDAY[1], TUESDAY[0])
    assert caught.value.field == "end"
    with pytest.raises(InvalidArgument) as caught:
        await clients.booking.booking_created(ALICE_30, AT_14, AT_14)
    assert caught.value.field == "end"
    assert [v.field for v in caught.value.violations] == ["end"]
    with pytest.raises(InvalidArgument) as caught:
        await clients.booking.invalidate(reason="test", event_type_id=ALICE_30, start=AT_14)
    assert caught.value.field == "end"
    with pytest.raises(InvalidArgument) as caught:
        await clients.booking.invalidate(reason="test")
    assert caught.value.field == "event_type_id"


async def test_the_raw_invalidate_of_everything(clients: Clients) -> None:
    await clients.agent.get_slots(ALICE_30, *TUESDAY)
    assert (await clients.agent.get_slots(ALICE_30, *TUESDAY)).freshness.source is Source.CACHE
    done = await clients.booking.invalidate(reason="outage_recovery", everything=True)
    assert done.everything
    assert done.all_dates
    assert (await clients.agent.get_slots(ALICE_30, *TUESDAY)).freshness.source is Source.UPSTREAM
