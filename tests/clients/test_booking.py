"""BookingClient against a played server (grpcio-testing): the scopes and reasons each
change sends, one deadline across a reschedule's calls, and the is_free check."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from availability.v1 import availability_pb2 as pb
from availability_client import BookingClient, DeadlineExceeded, Invalidated, Unavailable
from tests.clients.conftest import GET_SLOTS, INVALIDATE, TOKEN, Answer, PlayedServer

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)
LATER = START + timedelta(days=1)
BERLIN = ZoneInfo("Europe/Berlin")


def stamp(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def dropped(*dates: str, event_types: tuple[int, ...] = (1001, 1002)) -> Answer:
    return Answer(
        INVALIDATE,
        pb.InvalidateSlotsResponse(dates=dates, event_type_ids=event_types, host_ids=[1]),
    )


@pytest.fixture
def booking(played: PlayedServer) -> BookingClient:
    return BookingClient.from_channel(played.client_channel, token=TOKEN)


Method = Callable[[BookingClient], Invalidated]


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        (lambda b: b.booking_created(1001, START, END), "booking_created"),
        (lambda b: b.booking_cancelled(1001, START, END), "booking_cancelled"),
        (lambda b: b.slot_reserved(1001, START, END), "slot_reserved"),
        (lambda b: b.reservation_released(1001, START, END), "reservation_released"),
    ],
    ids=["created", "cancelled", "reserved", "released"],
)
def test_each_change_sends_its_window_and_reason(
    played: PlayedServer, booking: BookingClient, method: Method, reason: str
) -> None:
    result, [seen] = played.exchange(lambda: method(booking), dropped("2026-11-24"))
    assert seen.request == pb.InvalidateSlotsRequest(
        event_type_id=1001, start=stamp(START), end=stamp(END), reason=reason
    )
    assert seen.metadata["authorization"] == f"Bearer {TOKEN}"
    assert seen.timeout == pytest.approx(5.0, abs=0.05)  # the booking side's default
    assert result == Invalidated(
        dates=(date(2026, 11, 24),),
        all_dates=False,
        event_type_ids=(1001, 1002),
        host_ids=(1,),
        everything=False,
    )


def test_host_ids_and_a_per_call_deadline(played: PlayedServer, booking: BookingClient) -> None:
    _, [seen] = played.exchange(
        lambda: booking.booking_created(1005, START, END, host_ids=[1, 2], timeout=0.7),
        dropped("2026-11-24"),
    )
    assert seen.request.event_type_id == 1005
    assert list(seen.request.host_ids) == [1, 2]
    assert seen.timeout == pytest.approx(0.7, abs=0.05)


def test_a_reschedule_apart_sends_the_new_window_then_the_old(
    played: PlayedServer, booking: BookingClient
) -> None:
    result, [new, old] = played.exchange(
        lambda: booking.booking_rescheduled(
            1001, START, END, LATER, LATER + timedelta(minutes=30), host_ids=[7], timeout=2.0
        ),
        dropped("2026-11-25", event_types=(1001, 1002)),
        dropped("2026-11-24", event_types=(1001, 1003)),
    )
    assert new.request == pb.InvalidateSlotsRequest(
        event_type_id=1001,
        start=stamp(LATER),
        end=stamp(LATER + timedelta(minutes=30)),
        reason="booking_rescheduled",
        host_ids=[7],
    )
    assert old.request == pb.InvalidateSlotsRequest(
        event_type_id=1001,
        start=stamp(START),
        end=stamp(END),
        reason="booking_rescheduled",
        host_ids=[7],
    )
    # One deadline for the method: the second call gets what the first left.
    assert new.timeout is not None
    assert old.timeout is not None
    assert old.timeout <= new.timeout <= 2.0
    assert result == Invalidated(
        dates=(date(2026, 11, 24), date(2026, 11, 25)),
        all_dates=False,
        event_type_ids=(1001, 1002, 1003),
        host_ids=(1,),
        everything=False,
    )


@pytest.mark.parametrize(
    ("new_start", "new_end"),
    [
        (START + timedelta(minutes=15), END + timedelta(minutes=15)),  # overlapping
        (END, END + timedelta(minutes=30)),  # touching
        (START - timedelta(minutes=30), START),  # touching, earlier
    ],
)
def test_a_reschedule_within_reach_is_one_call_spanning_both(
    played: PlayedServer, booking: BookingClient, new_start: datetime, new_end: datetime
) -> None:
    _, [seen] = played.exchange(
        lambda: booking.booking_rescheduled(1001, START, END, new_start, new_end),
        dropped("2026-11-24"),
    )
    assert seen.request.start == stamp(min(START, new_start))
    assert seen.request.end == stamp(max(END, new_end))
    assert seen.request.reason == "booking_rescheduled"


def test_a_failed_first_half_of_a_reschedule_is_raised_and_the_rest_not_sent(
    played: PlayedServer, booking: BookingClient
) -> None:
    error = played.failure(
        lambda: booking.booking_rescheduled(1001, START, END, LATER, LATER + timedelta(hours=1)),
        Answer(INVALIDATE, code=grpc.StatusCode.UNAVAILABLE, details="Cal.com is down"),
    )
    assert isinstance(error, Unavailable)


def test_a_reschedule_whose_deadline_ran_out_between_calls(played: PlayedServer) -> None:
    booking = BookingClient.from_channel(played.client_channel, timeout=0.05)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            booking.booking_rescheduled, 1001, START, END, LATER, LATER + timedelta(hours=1)
        )
        _, _, rpc = played.channel.take_unary_unary(INVALIDATE)
        time.sleep(0.1)  # certainly past the client's 0.05 s deadline (grpcio-testing has none)
        rpc.terminate(pb.InvalidateSlotsResponse(), (), grpc.StatusCode.OK, "")
        with pytest.raises(DeadlineExceeded):
            future.result(timeout=30)
    assert len(played.client_channel.timeouts) == 1  # the old window's call was never made


def test_the_raw_invalidate(played: PlayedServer, booking: BookingClient) -> None:
    everything, [seen_all, seen_hosts] = played.exchange(
        lambda: [
            booking.invalidate(reason="outage_recovery", everything=True),
            booking.invalidate(reason="calendar_sync", host_ids=[3], start=START, end=END),
        ],
        Answer(INVALIDATE, pb.InvalidateSlotsResponse(all_dates=True, everything=True)),
        dropped("2026-11-24", event_types=(1003,)),
    )
    assert seen_all.request == pb.InvalidateSlotsRequest(everything=True, reason="outage_recovery")
    assert seen_hosts.request == pb.InvalidateSlotsRequest(
        host_ids=[3], start=stamp(START), end=stamp(END), reason="calendar_sync"
    )
    assert everything[0] == Invalidated((), True, (), (), True)


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.booking_created(1001, START.replace(tzinfo=None), END),
        lambda b: b.booking_rescheduled(1001, START, END, LATER.replace(tzinfo=None), LATER),
        lambda b: b.invalidate(
            reason="x", event_type_id=1001, start=START, end=END.replace(tzinfo=None)
        ),
    ],
    ids=["naive", "naive-new-window", "naive-raw"],
)
def test_what_cannot_cross_the_wire_is_refused_before_any_call(
    booking: BookingClient, call: Callable[[BookingClient], object]
) -> None:
    with pytest.raises(ValueError, match=r"start|end"):
        call(booking)


def offered(*slots: pb.Slot) -> Answer:
    return Answer(
        GET_SLOTS, pb.GetSlotsResponse(days=[pb.DaySlots(date="2026-11-24", slots=slots)])
    )


def slot(start: datetime, end: datetime | None = None, seats: pb.Seats | None = None) -> pb.Slot:
    message = pb.Slot(start=stamp(start), seats=seats)
    if end is not None:
        message.end.CopyFrom(stamp(end))
    return message


def test_is_free_asks_cal_com_for_exactly_that_slot(
    played: PlayedServer, booking: BookingClient
) -> None:
    free, [seen] = played.exchange(
        lambda: booking.is_free(1003, START, END, duration_minutes=30),
        offered(slot(START, END), slot(START + timedelta(minutes=15), END)),
    )
    assert free is True
    assert seen.request == pb.GetSlotsRequest(
        event_type_id=1003,
        start=stamp(START),
        end=stamp(END),
        time_zone="UTC",
        duration_minutes=30,
        consistency=pb.CONSISTENCY_FRESH,
    )
    assert seen.metadata["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("answer", "free"),
    [
        (offered(), False),
        (offered(slot(START + timedelta(minutes=15), END)), False),  # another start
        (offered(slot(START, END + timedelta(minutes=30))), False),  # another length
        (offered(slot(START)), True),  # Cal.com did not say when it ends
        (offered(slot(START, END, pb.Seats(total=3, booked=3, remaining=0))), False),
        (offered(slot(START, END, pb.Seats(total=3, booked=2, remaining=1))), True),
    ],
    ids=["nothing", "other-start", "other-end", "no-end", "seats-full", "a-seat-left"],
)
def test_is_free_only_for_that_very_slot(
    played: PlayedServer, booking: BookingClient, answer: Answer, free: bool
) -> None:
    got, _ = played.exchange(lambda: booking.is_free(1001, START.astimezone(BERLIN), END), answer)
    assert got is free
