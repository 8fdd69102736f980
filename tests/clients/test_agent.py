"""AgentClient against a played server (grpcio-testing): what goes out, what comes back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from availability.v1 import availability_pb2 as pb
from availability_client import AgentClient, Availability, Freshness, Slot, Source
from tests.clients.conftest import GET_SLOTS, TOKEN, Answer, PlayedServer

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
END = START + timedelta(days=1)


def stamp(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def slot(start: datetime, minutes: int = 30, seats: pb.Seats | None = None) -> pb.Slot:
    return pb.Slot(start=stamp(start), end=stamp(start + timedelta(minutes=minutes)), seats=seats)


def answer(response: pb.GetSlotsResponse | None = None) -> Answer:
    return Answer(GET_SLOTS, response or pb.GetSlotsResponse())


def test_request_fields_token_and_default_deadline(played: PlayedServer) -> None:
    agent = AgentClient.from_channel(played.client_channel, token=TOKEN)
    _, [seen] = played.exchange(
        lambda: agent.get_slots(1001, START, END, time_zone="Europe/Berlin"), answer()
    )
    assert seen.request == pb.GetSlotsRequest(
        event_type_id=1001,
        start=stamp(START),
        end=stamp(END),
        time_zone="Europe/Berlin",
        duration_minutes=0,
        consistency=pb.CONSISTENCY_CACHED,
    )
    assert seen.metadata["authorization"] == f"Bearer {TOKEN}"
    assert seen.timeout == pytest.approx(1.0, abs=0.05)  # one voice turn


def test_fresh_duration_zone_object_and_deadlines(played: PlayedServer) -> None:
    agent = AgentClient.from_channel(played.client_channel, timeout=0.4)
    berlin_start = START.astimezone(BERLIN)
    _, [client_default, per_call] = played.exchange(
        lambda: [
            agent.get_slots(1003, berlin_start, END, time_zone=BERLIN, duration_minutes=60),
            agent.get_slots(1003, START, END, fresh=True, timeout=2.5),
        ],
        answer(),
        answer(),
    )
    assert client_default.request.time_zone == "Europe/Berlin"
    assert client_default.request.duration_minutes == 60
    assert client_default.request.start == stamp(START)  # the same instant, sent as UTC
    assert client_default.timeout == pytest.approx(0.4, abs=0.05)
    assert per_call.request.consistency == pb.CONSISTENCY_FRESH
    assert per_call.request.time_zone == "UTC"
    assert per_call.timeout == pytest.approx(2.5, abs=0.05)
    assert "authorization" not in per_call.metadata  # no token, no header


def test_answer_in_the_requested_zone(played: PlayedServer) -> None:
    agent = AgentClient.from_channel(played.client_channel)
    fetched = datetime(2026, 11, 23, 5, 59, tzinfo=UTC)
    late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)  # 00:30 on the 25th in Berlin
    response = pb.GetSlotsResponse(
        days=[
            pb.DaySlots(date="2026-11-24", slots=[slot(START), slot(START + timedelta(hours=1))]),
            pb.DaySlots(
                date="2026-11-25",
                slots=[slot(late, 60, pb.Seats(total=3, booked=1, remaining=2, booking_uid="b"))],
            ),
        ],
        freshness=pb.Freshness(
            source=pb.Freshness.SOURCE_CACHE,
            age=Duration(seconds=61, nanos=500_000_000),
            fetched_at=stamp(fetched),
        ),
    )
    got, _ = played.exchange(
        lambda: agent.get_slots(1001, START, END, time_zone="Europe/Berlin"), answer(response)
    )
    assert isinstance(got, Availability)
    assert [day.date for day in got.days] == [date(2026, 11, 24), date(2026, 11, 25)]
    first, second, seated = got.slots()
    assert first == Slot(START, START + timedelta(minutes=30))
    assert first.start.tzinfo == BERLIN
    assert first.start.hour == 9
    assert (first.seats_total, first.seats_remaining, first.seats_booked) == (None, None, None)
    assert second.start == START + timedelta(hours=1)
    assert seated.start.tzinfo == BERLIN
    assert seated.start.date() == date(2026, 11, 25)
    assert (seated.seats_total, seated.seats_remaining, seated.seats_booked) == (3, 2, 1)
    assert got.freshness == Freshness(Source.CACHE, timedelta(seconds=61.5), fetched)
    assert got.freshness.fetched_at is not None
    assert got.freshness.fetched_at.tzinfo == BERLIN
    assert got.first_free(START + timedelta(minutes=1)) == second


@pytest.mark.parametrize(
    ("wire", "source"),
    [
        (pb.Freshness.SOURCE_CACHE, Source.CACHE),
        (pb.Freshness.SOURCE_UPSTREAM, Source.UPSTREAM),
        (pb.Freshness.SOURCE_STALE, Source.STALE),
        (pb.Freshness.SOURCE_UNSPECIFIED, Source.NONE),
    ],
)
def test_every_freshness_source(
    played: PlayedServer, wire: pb.Freshness.Source.ValueType, source: Source
) -> None:
    agent = AgentClient.from_channel(played.client_channel)
    response = pb.GetSlotsResponse(freshness=pb.Freshness(source=wire))
    got, _ = played.exchange(lambda: agent.get_slots(1001, START, END), answer(response))
    assert got.freshness == Freshness(source, timedelta(0), None)
    assert got.days == []
    assert got.first_free(START) is None


def test_a_slot_without_end(played: PlayedServer) -> None:
    agent = AgentClient.from_channel(played.client_channel)
    response = pb.GetSlotsResponse(
        days=[pb.DaySlots(date="2026-11-24", slots=[pb.Slot(start=stamp(START))])]
    )
    got, _ = played.exchange(lambda: agent.get_slots(1001, START, END), answer(response))
    assert list(got.slots()) == [Slot(START, None)]


@pytest.mark.parametrize(
    ("start", "end", "time_zone", "message"),
    [
        (START.replace(tzinfo=None), END, "UTC", "start must be a timezone-aware"),
        (START, END.replace(tzinfo=None), "UTC", "end must be a timezone-aware"),
        (START, END, "Mars/Olympus", "time_zone: unknown IANA time zone"),
        (START, END, "../etc/passwd", "time_zone: unknown IANA time zone"),
    ],
)
def test_what_cannot_cross_the_wire_is_refused_before_any_call(
    played: PlayedServer, start: datetime, end: datetime, time_zone: str, message: str
) -> None:
    agent = AgentClient.from_channel(played.client_channel)
    with pytest.raises(ValueError, match=message):
        agent.get_slots(1001, start, end, time_zone=time_zone)


def test_timeouts_must_be_positive(played: PlayedServer) -> None:
    with pytest.raises(ValueError, match="timeout"):
        AgentClient.from_channel(played.client_channel, timeout=0)
    agent = AgentClient.from_channel(played.client_channel)
    with pytest.raises(ValueError, match="timeout"):
        agent.get_slots(1001, START, END, timeout=-1)
