"""Tests of the Cal.com adapter over real loopback HTTP against a scripted server."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from availability.adapters.calcom.client import CalcomUpstream
from availability.core.ports import (
    EventTypeInfo,
    EventTypeNotFound,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from availability.core.slots import Seats, Slot
from tests.helpers.scripted_upstream import ScriptedResponse, ScriptedUpstream

KEY = "cal_live_0123456789abcdef_TOPSECRET"
EVENT = 4242
D1 = date(2050, 9, 5)
D2 = date(2050, 9, 6)

Call = Callable[..., Awaitable[object]]
"""``call(adapter, deadline=None)``: one of the two port methods with fixed arguments."""


def at(day: date, hour: int, minute: int = 0) -> int:
    """Epoch seconds of a UTC wall time, built without the adapter's parser."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp())


def success(data: Any) -> dict[str, Any]:
    return {"status": "success", "data": data}


def error_body(message: Any, code: str = "BadRequestException") -> dict[str, Any]:
    return {
        "status": "error",
        "timestamp": "2050-09-01T00:00:00.000Z",
        "path": "/v2/slots",
        "error": {"code": code, "message": message},
    }


async def call_slots(cal: CalcomUpstream, deadline: float | None = None) -> object:
    return await cal.fetch_slots(EVENT, D1, D2, timeout=deadline)


async def call_event_type(cal: CalcomUpstream, deadline: float | None = None) -> object:
    return await cal.fetch_event_type(EVENT, timeout=deadline)


BOTH_CALLS = pytest.mark.parametrize(
    "call", [call_slots, call_event_type], ids=["fetch_slots", "fetch_event_type"]
)


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream.running() as scripted:
        yield scripted
        assert scripted.unscripted == 0, "a request arrived with no scripted response"


@pytest.fixture
async def cal(upstream: ScriptedUpstream) -> AsyncIterator[CalcomUpstream]:
    async with CalcomUpstream(upstream.url, api_key=KEY, default_timeout=5.0) as adapter:
        yield adapter


# -- request shape -----------------------------------------------------------------


async def test_slots_request_shape(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(success({}))

    assert await cal.fetch_slots(EVENT, D1, D2) == {}

    [request] = upstream.requests
    assert request.method == "GET"
    assert request.path == "/v2/slots"
    assert request.params == {
        "eventTypeId": "4242",
        "start": "2050-09-05",
        "end": "2050-09-06",
        "timeZone": "UTC",
        "format": "range",
    }
    assert len(request.query) == len(request.params), "no parameter may repeat"
    assert request.header("cal-api-version") == "2024-09-04"
    assert request.header("authorization") == f"Bearer {KEY}"


async def test_end_is_the_last_day_itself_never_midnight_after(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    # Cal.com stretches a date-only or exact-midnight end to 23:59:59 of that day:
    # asking for one day must send end == that day, not the next midnight.
    upstream.reply_json(success({}))

    await cal.fetch_slots(EVENT, D1, D1)

    params = upstream.requests[0].params
    assert params["start"] == params["end"] == "2050-09-05"


async def test_duration_is_sent_only_when_positive(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    upstream.reply_json(success({}))
    upstream.reply_json(success({}))

    await cal.fetch_slots(EVENT, D1, D2, duration_minutes=0)
    await cal.fetch_slots(EVENT, D1, D2, duration_minutes=60)

    assert "duration" not in upstream.requests[0].params
    assert upstream.requests[1].params["duration"] == "60"


async def test_no_authorization_header_without_a_key(upstream: ScriptedUpstream) -> None:
    upstream.reply_json(success({}))
    upstream.reply_json(success({"id": EVENT}))

    async with CalcomUpstream(upstream.url) as anonymous:
        await anonymous.fetch_slots(EVENT, D1, D2)
        await anonymous.fetch_event_type(EVENT)

    assert [r.header("authorization") for r in upstream.requests] == [None, None]


async def test_event_type_request_shape(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(success({"id": EVENT}))

    await cal.fetch_event_type(EVENT)

    [request] = upstream.requests
    assert (request.method, request.path, request.query) == ("GET", "/v2/event-types/4242", ())
    assert request.header("cal-api-version") == "2024-06-14"
    assert request.header("authorization") == f"Bearer {KEY}"


async def test_connections_are_kept_alive(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(success({}))
    upstream.reply_json(success({}))

    await cal.fetch_slots(EVENT, D1, D2)
    await cal.fetch_slots(EVENT, D1, D2)

    first, second = upstream.requests
    assert first.client_port is not None
    assert first.client_port == second.client_port


async def test_invalid_range_is_rejected_without_a_request(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    with pytest.raises(UpstreamRejected, match="before"):
        await cal.fetch_slots(EVENT, D2, D1)
    with pytest.raises(UpstreamRejected, match="negative"):
        await cal.fetch_slots(EVENT, D1, D2, duration_minutes=-5)
    assert upstream.requests == []


# -- parsing -----------------------------------------------------------------------


async def test_parses_range_format(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(
        success(
            {
                "2050-09-05": [
                    {"start": "2050-09-05T09:00:00.000Z", "end": "2050-09-05T09:45:00.000Z"},
                    {"start": "2050-09-05T10:00:00.000Z", "end": "2050-09-05T10:45:00.000Z"},
                ]
            }
        )
    )

    slots = await cal.fetch_slots(EVENT, D1, D2)

    assert slots == {
        D1: (
            Slot(at(D1, 9), at(D1, 9, 45)),
            Slot(at(D1, 10), at(D1, 10, 45)),
        )
    }


@pytest.mark.parametrize(
    ("duration", "expected_end_minutes"), [(0, None), (30, 30)], ids=["no-duration", "duration"]
)
async def test_parses_time_format(
    upstream: ScriptedUpstream,
    cal: CalcomUpstream,
    duration: int,
    expected_end_minutes: int | None,
) -> None:
    # format=time items carry only a start; the end is known only if we chose the duration.
    upstream.reply_json(
        success(
            {
                "2050-09-05": [
                    {"start": "2050-09-05T09:00:00.000Z"},
                    "2050-09-05T11:00:00Z",  # the spec's schema says items are bare strings
                ]
            }
        )
    )

    slots = await cal.fetch_slots(EVENT, D1, D2, duration_minutes=duration)

    def end(start: int) -> int | None:
        return None if expected_end_minutes is None else start + expected_end_minutes * 60

    assert slots == {D1: (Slot(at(D1, 9), end(at(D1, 9))), Slot(at(D1, 11), end(at(D1, 11))))}


async def test_parses_seated_fields(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(
        success(
            {
                "2050-09-05": [
                    {
                        "start": "2050-09-05T09:00:00.000Z",
                        "end": "2050-09-05T10:00:00.000Z",
                        "seatsBooked": 2,
                        "seatsRemaining": 3,
                        "seatsTotal": 5,
                        "bookingUid": "bk_123",
                    },
                    {
                        "start": "2050-09-05T11:00:00.000Z",
                        "end": "2050-09-05T12:00:00.000Z",
                        "attendeesCount": 1,
                        "bookingUid": "bk_456",
                    },
                    {"start": "2050-09-05T13:00:00.000Z", "end": "2050-09-05T14:00:00.000Z"},
                ]
            }
        )
    )

    [seated, legacy, plain] = (await cal.fetch_slots(EVENT, D1, D2))[D1]

    assert seated.seats == Seats(total=5, booked=2, remaining=3, booking_uid="bk_123")
    assert legacy.seats == Seats(total=None, booked=1, remaining=None, booking_uid="bk_456")
    assert plain.seats is None


async def test_accepts_z_offsets_and_milliseconds(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    spellings = [
        "2050-09-05T09:00:00Z",
        "2050-09-05T09:00:00.000Z",
        "2050-09-05T09:00:00+00:00",
        "2050-09-05T11:00:00.000+02:00",
        "2050-09-05T04:00:00.000-05:00",
        "2050-09-05T09:00:00.999Z",  # sub-second parts are dropped, never rounded up
    ]
    upstream.reply_json(success({"2050-09-05": [{"start": s} for s in spellings]}))

    slots = await cal.fetch_slots(EVENT, D1, D2)

    assert [slot.start for slot in slots[D1]] == [at(D1, 9)] * len(spellings)


async def test_regroups_by_utc_start_day_and_sorts(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    # Keys are in the response's time zone; never trust them for grouping.
    upstream.reply_json(
        success(
            {
                "2050-09-06": [
                    {"start": "2050-09-06T10:00:00Z", "end": "2050-09-06T11:00:00Z"},
                    {"start": "2050-09-06T08:00:00Z", "end": "2050-09-06T09:00:00Z"},
                ],
                "2050-09-05": [
                    # 23:30 at -02:00 is 01:30 UTC the next day.
                    {"start": "2050-09-05T23:30:00-02:00", "end": "2050-09-06T00:30:00-02:00"},
                    {"start": "2050-09-05T12:00:00Z", "end": "2050-09-05T13:00:00Z"},
                ],
            }
        )
    )

    slots = await cal.fetch_slots(EVENT, D1, D2)

    assert list(slots) == [D1, D2]
    assert slots[D1] == (Slot(at(D1, 12), at(D1, 13)),)
    assert [s.start for s in slots[D2]] == [at(D2, 1, 30), at(D2, 8), at(D2, 10)]


async def test_drops_slots_outside_the_requested_days(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    upstream.reply_json(
        success(
            {
                "2050-09-04": [{"start": "2050-09-04T23:59:00Z"}],
                "2050-09-05": [
                    {"start": "2050-09-05T00:00:00Z"},
                    {"start": "2050-09-06T00:00:00Z"},
                ],
            }
        )
    )

    slots = await cal.fetch_slots(EVENT, D1, D1)

    assert slots == {D1: (Slot(at(D1, 0), None),)}


# -- error mapping -------------------------------------------------------------------


@BOTH_CALLS
@pytest.mark.parametrize(
    "case",
    [
        (
            ScriptedResponse(400, json=error_body("Invalid time range given")),
            UpstreamRejected,
            "Invalid time range given",
        ),
        (
            ScriptedResponse(400, json=error_body(["start must be a date", "end too"])),
            UpstreamRejected,
            "start must be a date; end too",
        ),
        (ScriptedResponse(400, body="<html>oops</html>"), UpstreamRejected, "rejected"),
        (ScriptedResponse(404, json=error_body("nope", "NotFound")), EventTypeNotFound, "4242"),
        (ScriptedResponse(401, json=error_body("bad key")), UpstreamAuthError, "API key"),
        (ScriptedResponse(403, json=error_body("forbidden")), UpstreamAuthError, "API key"),
        (
            ScriptedResponse(
                429,
                json=error_body("ThrottlerException: Too Many Requests"),
                headers={"X-RateLimit-Reset-Default": "42"},
            ),
            UpstreamThrottled,
            "Cal.com rate limit reached; resets in 42 s",
        ),
        (ScriptedResponse(429), UpstreamThrottled, "Cal.com rate limit reached"),
        (ScriptedResponse(500, json=error_body("boom")), UpstreamUnavailable, "HTTP 500"),
        (ScriptedResponse(502, body="Bad Gateway"), UpstreamUnavailable, "HTTP 502"),
        (ScriptedResponse(503, body=""), UpstreamUnavailable, "HTTP 503"),
        (
            ScriptedResponse(302, headers={"location": "https://elsewhere.example/"}),
            UpstreamUnavailable,
            "unexpected HTTP 302",
        ),
        (ScriptedResponse(418), UpstreamUnavailable, "unexpected HTTP 418"),
    ],
    ids=[
        "400",
        "400-list",
        "400-html",
        "404",
        "401",
        "403",
        "429-reset",
        "429-bare",
        "500",
        "502",
        "503",
        "302",
        "418",
    ],
)
async def test_status_mapping(
    upstream: ScriptedUpstream,
    cal: CalcomUpstream,
    call: Call,
    case: tuple[ScriptedResponse, type[UpstreamError], str],
) -> None:
    response, error, fragment = case
    upstream.enqueue(response)

    with pytest.raises(UpstreamError) as caught:
        await call(cal)

    assert type(caught.value) is error
    assert fragment in str(caught.value)
    assert len(upstream.requests) == 1, "no retries: the rate budget is shared"


async def test_auth_error_without_key_says_none_is_configured(
    upstream: ScriptedUpstream,
) -> None:
    upstream.enqueue(ScriptedResponse(401))
    async with CalcomUpstream(upstream.url) as anonymous:
        with pytest.raises(UpstreamAuthError, match="none is configured"):
            await anonymous.fetch_event_type(EVENT)


async def test_429_reports_only_its_own_reset(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    upstream.enqueue(
        ScriptedResponse(200, json=success({}), headers={"X-RateLimit-Reset-Default": "5"}),
        ScriptedResponse(429),
    )
    await cal.fetch_slots(EVENT, D1, D2)

    with pytest.raises(UpstreamUnavailable) as caught:
        await cal.fetch_slots(EVENT, D1, D2)

    assert str(caught.value) == "Cal.com rate limit reached"


async def test_long_upstream_messages_are_truncated(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    upstream.enqueue(ScriptedResponse(400, json=error_body("x" * 5000)))

    with pytest.raises(UpstreamRejected) as caught:
        await cal.fetch_slots(EVENT, D1, D2)

    assert len(str(caught.value)) < 300


MALFORMED_SLOTS = {
    "not-json": ScriptedResponse(200, body="<html>maintenance</html>"),
    "not-utf8": ScriptedResponse(200, body=b"\xff\xfe\xfa"),
    "empty": ScriptedResponse(200, body=""),
    "json-array": ScriptedResponse(200, json=[1, 2]),
    "status-error": ScriptedResponse(200, json=error_body("but 200")),
    "no-status": ScriptedResponse(200, json={"data": {}}),
    "no-data": ScriptedResponse(200, json={"status": "success"}),
    "data-list": ScriptedResponse(200, json=success([])),
    "day-not-list": ScriptedResponse(200, json=success({"2050-09-05": {"start": "x"}})),
    "item-number": ScriptedResponse(200, json=success({"2050-09-05": [17]})),
    "no-start": ScriptedResponse(200, json=success({"2050-09-05": [{"end": "2050-09-05T09Z"}]})),
    "start-number": ScriptedResponse(200, json=success({"2050-09-05": [{"start": 1}]})),
    "bad-time": ScriptedResponse(200, json=success({"2050-09-05": [{"start": "tomorrow 9am"}]})),
    "naive-time": ScriptedResponse(
        200, json=success({"2050-09-05": [{"start": "2050-09-05T09:00:00"}]})
    ),
    "end-before-start": ScriptedResponse(
        200,
        json=success(
            {"2050-09-05": [{"start": "2050-09-05T09:00:00Z", "end": "2050-09-05T08:00:00Z"}]}
        ),
    ),
    "seat-count-string": ScriptedResponse(
        200,
        json=success({"2050-09-05": [{"start": "2050-09-05T09:00:00Z", "seatsTotal": "five"}]}),
    ),
    "booking-uid-number": ScriptedResponse(
        200, json=success({"2050-09-05": [{"start": "2050-09-05T09:00:00Z", "bookingUid": 7}]})
    ),
    "deep-nesting": ScriptedResponse(200, body="[" * 100_000 + "]" * 100_000),
}


@pytest.mark.parametrize("response", MALFORMED_SLOTS.values(), ids=MALFORMED_SLOTS.keys())
async def test_malformed_slots_body_is_unavailable(
    upstream: ScriptedUpstream, cal: CalcomUpstream, response: ScriptedResponse
) -> None:
    upstream.enqueue(response)

    with pytest.raises(UpstreamError) as caught:
        await cal.fetch_slots(EVENT, D1, D2)

    assert type(caught.value) is UpstreamUnavailable
    assert "malformed" in str(caught.value)


MALFORMED_EVENT_TYPES = {
    "not-json": ScriptedResponse(200, body="nope"),
    "status-error": ScriptedResponse(200, json=error_body("but 200")),
    "data-null": ScriptedResponse(200, json=success(None)),
    "data-string": ScriptedResponse(200, json=success("4242")),
}


@pytest.mark.parametrize(
    "response", MALFORMED_EVENT_TYPES.values(), ids=MALFORMED_EVENT_TYPES.keys()
)
async def test_malformed_event_type_body_is_unavailable(
    upstream: ScriptedUpstream, cal: CalcomUpstream, response: ScriptedResponse
) -> None:
    upstream.enqueue(response)

    with pytest.raises(UpstreamError) as caught:
        await cal.fetch_event_type(EVENT)

    assert type(caught.value) is UpstreamUnavailable
    assert "malformed" in str(caught.value)


async def test_oversized_body_is_unavailable(upstream: ScriptedUpstream) -> None:
    upstream.reply_json(success({"2050-09-05": [{"start": "2050-09-05T09:00:00Z"}] * 50}))

    async with CalcomUpstream(upstream.url, max_body_bytes=256) as small:
        with pytest.raises(UpstreamUnavailable, match="larger than 256 bytes"):
            await small.fetch_slots(EVENT, D1, D2)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but never listens, so connecting is refused without races."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@BOTH_CALLS
async def test_connection_refused_is_unavailable(refused_url: str, call: Call) -> None:
    async with CalcomUpstream(refused_url, api_key=KEY) as cal:
        with pytest.raises(UpstreamUnavailable, match=r"could not reach Cal\.com") as caught:
            await call(cal)

    assert refused_url not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__, "the httpx error holds the request and its headers"


@BOTH_CALLS
async def test_slow_upstream_times_out_at_the_deadline(
    upstream: ScriptedUpstream, cal: CalcomUpstream, call: Call
) -> None:
    upstream.enqueue(ScriptedResponse(200, json=success({}), delay=5.0))

    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match=r"within 0\.2 s"):
        await call(cal, deadline=0.2)
    elapsed = time.monotonic() - started

    assert 0.15 <= elapsed < 1.5


async def test_dripping_body_cannot_outlast_the_deadline(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    # Each byte arrives well within httpx's per-read timeout; only an overall
    # bound stops the call at the deadline.
    upstream.enqueue(ScriptedResponse(200, json=success({}), drip_interval=0.05))

    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match=r"within 0\.3 s"):
        await cal.fetch_slots(EVENT, D1, D2, timeout=0.3)

    assert time.monotonic() - started < 1.0


async def test_default_timeout_applies_when_none_is_given(upstream: ScriptedUpstream) -> None:
    upstream.enqueue(ScriptedResponse(200, json=success({}), delay=5.0))

    started = time.monotonic()
    async with CalcomUpstream(upstream.url, default_timeout=0.2) as cal:
        with pytest.raises(UpstreamUnavailable, match="did not answer"):
            await cal.fetch_slots(EVENT, D1, D2, timeout=None)

    assert time.monotonic() - started < 1.5


@BOTH_CALLS
@pytest.mark.parametrize("deadline", [0.0, -1.0, float("nan")])
async def test_expired_deadline_sends_nothing(
    upstream: ScriptedUpstream, cal: CalcomUpstream, call: Call, deadline: float
) -> None:
    with pytest.raises(UpstreamUnavailable, match="deadline"):
        await call(cal, deadline=deadline)

    assert upstream.requests == []


# -- secrets, logging, rate-limit state ------------------------------------------------


async def test_api_key_never_leaks(
    upstream: ScriptedUpstream,
    cal: CalcomUpstream,
    refused_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.enqueue(
        ScriptedResponse(200, json=success({})),
        ScriptedResponse(400, json=error_body(f"bad header Bearer {KEY}")),
        ScriptedResponse(401),
        ScriptedResponse(403),
        ScriptedResponse(404),
        ScriptedResponse(429, headers={"X-RateLimit-Reset-Default": "60"}),
        ScriptedResponse(500),
        ScriptedResponse(200, body="not json"),
        ScriptedResponse(200, json=success({}), delay=5.0),
    )
    errors: list[UpstreamError] = []
    await cal.fetch_slots(EVENT, D1, D2)
    for _ in range(7):
        with pytest.raises(UpstreamError) as caught:
            await cal.fetch_slots(EVENT, D1, D2)
        errors.append(caught.value)
    with pytest.raises(UpstreamError) as caught:
        await cal.fetch_event_type(EVENT, timeout=0.1)
    errors.append(caught.value)
    async with CalcomUpstream(refused_url, api_key=KEY) as unreachable:
        with pytest.raises(UpstreamError) as caught:
            await unreachable.fetch_slots(EVENT, D1, D2)
        errors.append(caught.value)
        assert KEY not in repr(unreachable) + str(unreachable)

    assert len(errors) == 9
    assert "[redacted]" in str(errors[0]), "an echoed key must be scrubbed"
    for error in errors:
        assert KEY not in str(error)
        assert KEY not in repr(error)
        assert all(KEY not in str(arg) for arg in error.args)
    assert KEY not in repr(cal) + str(cal) + repr(vars(cal))
    assert KEY not in caplog.text
    assert "Traceback" not in caplog.text
    assert not any(record.exc_info for record in caplog.records)
    adapter_lines = [
        r.getMessage() for r in caplog.records if r.name == "availability.adapters.calcom.client"
    ]
    assert any(line.startswith("Cal.com GET /v2/slots -> 200 in ") for line in adapter_lines)
    assert any(line.endswith(" ms") and "-> 429" in line for line in adapter_lines)


def test_repr_shows_only_whether_a_key_is_set() -> None:
    with_key = CalcomUpstream("https://user:hunter2@api.cal.com/", api_key=KEY)
    without = CalcomUpstream("https://api.cal.com")

    assert repr(with_key) == "CalcomUpstream(base_url='https://api.cal.com', api_key=set)"
    assert repr(without) == "CalcomUpstream(base_url='https://api.cal.com', api_key=unset)"
    assert "hunter2" not in repr(with_key)


@pytest.mark.parametrize("url", ["api.cal.com", "ftp://api.cal.com", ""])
def test_rejects_a_base_url_that_is_not_http(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        CalcomUpstream(url)


async def test_borrowed_client_is_not_closed(upstream: ScriptedUpstream) -> None:
    upstream.reply_json(success({}))
    async with httpx.AsyncClient() as client:
        async with CalcomUpstream(upstream.url, client=client) as cal:
            await cal.fetch_slots(EVENT, D1, D2)
        assert not client.is_closed


async def test_owned_client_is_closed(upstream: ScriptedUpstream) -> None:
    cal = CalcomUpstream(upstream.url)
    await cal.aclose()

    with pytest.raises(UpstreamUnavailable, match="closed"):
        await cal.fetch_slots(EVENT, D1, D2)
    assert upstream.requests == []


# -- event types -------------------------------------------------------------------------


async def test_individual_event_type(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(
        success(
            {
                "id": EVENT,
                "lengthInMinutes": 30,
                "title": "Intro",
                "slug": "intro",
                "ownerId": 10,
                "users": ["10", 11, {"id": 12, "name": "Carol"}, {"userId": "13"}, "bob", None],
            }
        )
    )

    info = await cal.fetch_event_type(EVENT)

    assert info == EventTypeInfo(EVENT, frozenset({10, 11, 12, 13}))


async def test_team_event_type(upstream: ScriptedUpstream, cal: CalcomUpstream) -> None:
    upstream.reply_json(
        success(
            {
                "id": EVENT,
                "lengthInMinutes": 60.0,
                "teamId": 7,
                "ownerId": None,
                "schedulingType": "roundRobin",
                "hosts": [
                    {"userId": 5, "mandatory": False, "priority": "medium"},
                    {"userId": 6, "name": "Dave"},
                    {"priority": "high"},
                ],
                "users": [],
            }
        )
    )

    info = await cal.fetch_event_type(EVENT)

    assert info == EventTypeInfo(EVENT, frozenset({5, 6}))


async def test_event_type_tolerates_missing_fields(
    upstream: ScriptedUpstream, cal: CalcomUpstream
) -> None:
    upstream.reply_json(success({"id": EVENT, "hosts": "weird", "lengthInMinutes": "long"}))

    info = await cal.fetch_event_type(EVENT)

    assert info == EventTypeInfo(EVENT, frozenset())


# -- every request reported once ------------------------------------------------------


async def test_every_request_is_reported_once_with_its_outcome(
    upstream: ScriptedUpstream, refused_url: str
) -> None:
    seen: list[tuple[str, str, float]] = []

    def on_request(endpoint: str, outcome: str, seconds: float) -> None:
        seen.append((endpoint, outcome, seconds))

    upstream.enqueue(
        ScriptedResponse(200, json=success({})),
        ScriptedResponse(400, json=error_body("bad")),
        ScriptedResponse(403),
        ScriptedResponse(404),
        ScriptedResponse(429),
        ScriptedResponse(503),
        ScriptedResponse(200, body="not json"),
        ScriptedResponse(200, json=success({"2050-09-05": "not a list"})),
        ScriptedResponse(302, headers={"location": "https://elsewhere.example"}),
        ScriptedResponse(200, json=success({}), delay=5.0),
        ScriptedResponse(200, json=success({"id": EVENT, "ownerId": 7})),
    )
    async with CalcomUpstream(upstream.url, api_key=KEY, on_request=on_request) as cal:
        await cal.fetch_slots(EVENT, D1, D2)
        for _ in range(8):
            with pytest.raises(UpstreamError):
                await cal.fetch_slots(EVENT, D1, D2)
        with pytest.raises(UpstreamUnavailable):
            await cal.fetch_slots(EVENT, D1, D2, timeout=0.1)
        await cal.fetch_event_type(EVENT)
        with pytest.raises(UpstreamError):
            await cal.fetch_slots(EVENT, D1, D2, timeout=0)  # never sent: not reported
    async with CalcomUpstream(refused_url, on_request=on_request) as unreachable:
        with pytest.raises(UpstreamUnavailable):
            await unreachable.fetch_event_type(EVENT)

    assert [(endpoint, outcome) for endpoint, outcome, _ in seen] == [
        ("slots", "ok"),
        ("slots", "rejected"),
        ("slots", "rejected"),
        ("slots", "not_found"),
        ("slots", "rate_limited"),
        ("slots", "server_error"),
        ("slots", "malformed"),
        ("slots", "malformed"),
        ("slots", "malformed"),
        ("slots", "timeout"),
        ("event_type", "ok"),
        ("event_type", "connection"),
    ]
    assert len(seen) == len(upstream.requests) + 1  # the refused connection reached nobody
    assert all(seconds >= 0 for _, _, seconds in seen)
