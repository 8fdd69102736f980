"""The sandbox over real loopback HTTP: Cal.com's behaviour, its test hooks, and its contract.

Contract tests hold the sandbox's answers to Cal.com's own published OpenAPI
documents, so the adapter tested against the sandbox is tested against Cal.com.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox, Sandbox, default_calendar, serve_sandbox
from tests.helpers.calcom_fixtures import event_types_spec, slots_spec

__all__: list[str] = []

NOW = datetime(2026, 11, 23, 6, tzinfo=UTC).timestamp()  # Monday 06:00 UTC
SLOTS_HEADERS = {"cal-api-version": "2024-09-04"}
EVENT_TYPE_HEADERS = {"cal-api-version": "2024-06-14"}
BOOKING_HEADERS = {"cal-api-version": "2024-08-13"}
TUESDAY = {"start": "2026-11-24", "end": "2026-11-24"}
SEAT_KEYS = {"seatsBooked", "seatsRemaining", "seatsTotal", "bookingUid"}
CALCOM_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")

Json = dict[str, Any]
Params = dict[str, str | int]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def sandbox(clock: ManualClock) -> AsyncIterator[RunningSandbox]:
    async with serve_sandbox(clock=clock, latency=(0, 0), rate_limit_per_minute=None) as running:
        yield running


@pytest.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url, headers=SLOTS_HEADERS) as http:
        yield http


async def slots(client: httpx.AsyncClient, **params: str | int) -> httpx.Response:
    return await client.get("/v2/slots", params=params)


async def data(client: httpx.AsyncClient, **params: str | int) -> dict[str, list[Json]]:
    response = await slots(client, **params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    assert body["status"] == "success"
    result: dict[str, list[Json]] = body["data"]
    return result


def starts(day_map: dict[str, list[Json]]) -> list[str]:
    return [item["start"] for items in day_map.values() for item in items]


def assert_error(response: httpx.Response, status: int, code: str, message: str = "") -> Json:
    """Cal.com's error envelope: status, timestamp, path, error{code, message, details}."""
    assert response.status_code == status, response.text
    body: Json = response.json()
    assert set(body) == {"status", "timestamp", "path", "error"}
    assert body["status"] == "error"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert body["path"].split("?")[0] == response.request.url.path
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert message in body["error"]["message"]
    assert "details" in body["error"]
    return body


# -- GET /v2/slots -------------------------------------------------------------


async def test_time_format_is_the_default(client: httpx.AsyncClient) -> None:
    day_map = await data(client, eventTypeId=1001, **TUESDAY)
    assert list(day_map) == ["2026-11-24"]
    assert day_map["2026-11-24"][:2] == [
        {"start": "2026-11-24T08:00:00.000Z"},
        {"start": "2026-11-24T08:30:00.000Z"},
    ]
    assert len(day_map["2026-11-24"]) == 16
    assert await data(client, eventTypeId=1001, format="time", **TUESDAY) == day_map


async def test_range_format_adds_ends(client: httpx.AsyncClient) -> None:
    day_map = await data(client, eventTypeId=1002, format="range", **TUESDAY)
    assert day_map["2026-11-24"][0] == {
        "start": "2026-11-24T08:00:00.000Z",
        "end": "2026-11-24T09:00:00.000Z",
    }


async def test_time_zone_regroups_days_and_sets_offsets(client: httpx.AsyncClient) -> None:
    # dana (Sydney, UTC+11): UTC Tuesday holds the end of her Tuesday and the start of Wednesday.
    day_map = await data(client, eventTypeId=1007, timeZone="Australia/Sydney", **TUESDAY)
    assert list(day_map) == ["2026-11-24", "2026-11-25"]
    assert day_map["2026-11-24"][0] == {"start": "2026-11-24T11:00:00.000+11:00"}
    assert day_map["2026-11-25"][0] == {"start": "2026-11-25T09:00:00.000+11:00"}
    in_utc = await data(client, eventTypeId=1007, **TUESDAY)
    assert list(in_utc) == ["2026-11-24"]
    assert len(starts(in_utc)) == len(starts(day_map))
    kolkata = await data(client, eventTypeId=1003, timeZone="Asia/Kolkata", **TUESDAY)
    assert starts(kolkata)[0] == "2026-11-24T10:00:00.000+05:30"
    etc_utc = await data(client, eventTypeId=1001, timeZone="Etc/UTC", **TUESDAY)
    assert starts(etc_utc)[0] == "2026-11-24T08:00:00.000+00:00"  # luxon: Z only for "UTC"


async def test_range_trap_end_at_midnight_means_the_whole_day(client: httpx.AsyncClient) -> None:
    whole_day = await data(client, eventTypeId=1001, start="2026-11-24", end="2026-11-24T23:59:59Z")
    assert len(starts(whole_day)) == 16
    for end in ("2026-11-24", "2026-11-24T00:00:00Z", "2026-11-24T00:00:00.000Z"):
        assert await data(client, eventTypeId=1001, start="2026-11-24", end=end) == whole_day
    assert await data(client, eventTypeId=1001, start="2026-11-24T00:00:00Z", end="2026-11-24") == (
        whole_day
    )
    # Not "up to midnight": the next day's end-at-midnight covers that next day entirely.
    two_days = await data(client, eventTypeId=1001, start="2026-11-24", end="2026-11-25T00:00:00Z")
    assert list(two_days) == ["2026-11-24", "2026-11-25"]
    partial = await data(
        client, eventTypeId=1001, start="2026-11-24T09:00:00Z", end="2026-11-24T10:00:00+00:00"
    )
    assert starts(partial) == [f"2026-11-24T{t}:00.000Z" for t in ("09:00", "09:30", "10:00")]
    offset = await data(
        client, eventTypeId=1001, start="2026-11-24T10:00:00+01:00", end="2026-11-24T10:00:00Z"
    )
    assert len(starts(offset)) == 3  # 09:00Z .. 10:00Z, the offset honoured


async def test_past_slots_are_excluded(client: httpx.AsyncClient, clock: ManualClock) -> None:
    clock.set(datetime(2026, 11, 24, 12, 5, tzinfo=UTC).timestamp())
    assert starts(await data(client, eventTypeId=1001, **TUESDAY))[0] == "2026-11-24T12:30:00.000Z"


async def test_never_available_and_weekend_give_empty_data(client: httpx.AsyncClient) -> None:
    assert await data(client, eventTypeId=1006, start="2026-11-23", end="2026-12-06") == {}
    assert await data(client, eventTypeId=1001, start="2026-11-28", end="2026-11-29") == {}


async def test_seated_slots_carry_seat_counts(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    start = datetime(2026, 11, 24, 14, tzinfo=UTC)
    first = sandbox.calendar.book(1004, start)
    day_map = await data(client, eventTypeId=1004, format="range", **TUESDAY)
    assert day_map["2026-11-24"][:2] == [
        {
            "start": "2026-11-24T14:00:00.000Z",
            "end": "2026-11-24T15:00:00.000Z",
            "seatsBooked": 1,
            "seatsRemaining": 2,
            "seatsTotal": 3,
            "bookingUid": first.uid,
        },
        {
            "start": "2026-11-24T15:00:00.000Z",
            "end": "2026-11-24T16:00:00.000Z",
            "seatsBooked": 0,
            "seatsRemaining": 3,
            "seatsTotal": 3,
        },
    ]


async def test_booking_one_event_type_changes_the_hosts_others(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    sandbox.calendar.book(1001, datetime(2026, 11, 24, 14, 30, tzinfo=UTC))
    sixty = starts(await data(client, eventTypeId=1002, **TUESDAY))
    assert "2026-11-24T14:00:00.000Z" not in sixty
    team = starts(await data(client, eventTypeId=1005, **TUESDAY))
    assert team == [
        "2026-11-24T14:00:00.000Z",
        "2026-11-24T15:00:00.000Z",
        "2026-11-24T15:30:00.000Z",
    ]


async def test_duration_selects_among_the_event_types_lengths(client: httpx.AsyncClient) -> None:
    assert len(starts(await data(client, eventTypeId=1003, duration=60, **TUESDAY))) == 7
    assert len(starts(await data(client, eventTypeId=1003, duration=15, **TUESDAY))) == 28
    assert_error(
        await slots(client, eventTypeId=1003, duration=45, **TUESDAY), 400, "BadRequestException"
    )
    assert_error(
        await slots(client, eventTypeId=1001, duration=60, **TUESDAY), 400, "BadRequestException"
    )


async def test_other_lookups(client: httpx.AsyncClient, sandbox: RunningSandbox) -> None:
    by_id = await data(client, eventTypeId=1001, **TUESDAY)
    assert await data(client, eventTypeSlug="intro-30", username="alice", **TUESDAY) == by_id
    team = await data(client, eventTypeId=1005, **TUESDAY)
    assert await data(client, eventTypeSlug="sales-sync", teamSlug="sales-team", **TUESDAY) == team
    assert await data(client, usernames="alice,bob", **TUESDAY) == team
    assert_error(
        await slots(client, eventTypeSlug="intro-30", username="bob", **TUESDAY),
        404,
        "NotFoundException",
    )
    assert_error(await slots(client, usernames="alice,nobody", **TUESDAY), 404, "NotFoundException")
    assert_error(await slots(client, usernames="alice", **TUESDAY), 400, "BadRequestException")
    assert_error(
        await slots(client, eventTypeSlug="intro-30", **TUESDAY), 400, "BadRequestException"
    )
    assert_error(await slots(client, **TUESDAY), 400, "BadRequestException")


async def test_booking_uid_to_reschedule_frees_its_own_slot(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    booking = sandbox.calendar.book(1001, datetime(2026, 11, 24, 9, tzinfo=UTC))
    assert "2026-11-24T09:00:00.000Z" not in starts(await data(client, eventTypeId=1001, **TUESDAY))
    rescheduling = await data(
        client, eventTypeId=1001, bookingUidToReschedule=booking.uid, **TUESDAY
    )
    assert "2026-11-24T09:00:00.000Z" in starts(rescheduling)


@pytest.mark.parametrize(
    ("params", "status", "code", "message"),
    [
        (
            {"eventTypeId": 1001, "foo": "1", **TUESDAY},
            400,
            "BadRequestException",
            "property foo should not exist",
        ),
        (
            {"eventTypeId": 1001, "start": "2026-11-25", "end": "2026-11-24"},
            400,
            "BadRequestException",
            "Invalid time range given",
        ),
        (
            {"eventTypeId": 1001, "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T09:00:00Z"},
            400,
            "BadRequestException",
            "Invalid time range given",
        ),
        ({"eventTypeId": 9999, **TUESDAY}, 404, "NotFoundException", "9999"),
        ({"eventTypeId": "abc", **TUESDAY}, 400, "BadRequestException", "eventTypeId"),
        ({"eventTypeId": 1001, "end": "2026-11-24"}, 400, "BadRequestException", "start"),
        (
            {"eventTypeId": 1001, "start": "next tuesday", "end": "2026-11-24"},
            400,
            "BadRequestException",
            "start",
        ),
        (
            {"eventTypeId": 1001, "timeZone": "Mars/Olympus", **TUESDAY},
            400,
            "BadRequestException",
            "timeZone",
        ),
        (
            {"eventTypeId": 1001, "timeZone": "Europe", **TUESDAY},
            400,
            "BadRequestException",
            "timeZone",
        ),
        ({"eventTypeId": 1001, "format": "list", **TUESDAY}, 400, "BadRequestException", "format"),
        (
            {"usernames": "alice,bob", "duration": -5, **TUESDAY},
            400,
            "BadRequestException",
            "duration",
        ),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, params: dict[str, str | int], status: int, code: str, message: str
) -> None:
    assert_error(await slots(client, **params), status, code, message)


async def test_api_version_header_is_required(client: httpx.AsyncClient) -> None:
    params: Params = {"eventTypeId": 1001, **TUESDAY}
    for headers in ({"cal-api-version": "2024-08-13"}, {"cal-api-version": ""}):
        assert_error(
            await client.get("/v2/slots", params=params, headers=headers), 404, "NotFoundException"
        )
    async with httpx.AsyncClient(base_url=str(client.base_url)) as bare:
        body = assert_error(await bare.get("/v2/slots", params=params), 404, "NotFoundException")
    assert body["path"].startswith("/v2/slots?eventTypeId=1001")


async def test_unknown_routes_and_methods_are_404(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.get("/v2/nothing"), 404, "NotFoundException", "Cannot GET /v2/nothing"
    )
    assert_error(await client.post("/v2/slots"), 404, "NotFoundException", "Cannot POST /v2/slots")


# -- auth, throttling, latency ---------------------------------------------------------


async def test_api_key_is_optional_for_slots_but_must_be_right() -> None:
    async with (
        serve_sandbox(clock=ManualClock(NOW), latency=(0, 0), api_key="cal_test_secret") as sandbox,
        httpx.AsyncClient(base_url=sandbox.url, headers=SLOTS_HEADERS) as client,
    ):
        params: Params = {"eventTypeId": 1001, **TUESDAY}
        assert (await client.get("/v2/slots", params=params)).status_code == 200
        good = {"authorization": "Bearer cal_test_secret"}
        assert (await client.get("/v2/slots", params=params, headers=good)).status_code == 200
        bad = await client.get("/v2/slots", params=params, headers={"authorization": "Bearer x"})
        assert_error(bad, 401, "UnauthorizedException")
        event_type = await client.get("/v2/event-types/1001", headers=EVENT_TYPE_HEADERS)
        assert_error(event_type, 401, "UnauthorizedException")
        assert [r.authorized for r in sandbox.requests] == [False, True, True, False]
        assert "cal_test_secret" not in repr(list(sandbox.requests))


async def test_rate_limit_blocks_for_sixty_seconds_on_the_clock(clock: ManualClock) -> None:
    async with (
        serve_sandbox(clock=clock, latency=(0, 0), rate_limit_per_minute=3) as sandbox,
        httpx.AsyncClient(base_url=sandbox.url, headers=SLOTS_HEADERS) as client,
    ):
        params: Params = {"eventTypeId": 1001, **TUESDAY}

        async def get(key: str = "k1") -> httpx.Response:
            headers = {"authorization": f"Bearer {key}"}
            return await client.get("/v2/slots", params=params, headers=headers)

        def limits(response: httpx.Response) -> tuple[str, ...]:
            names = ("Limit", "Remaining", "Reset")
            return tuple(response.headers[f"X-RateLimit-{n}-Default"] for n in names)

        assert [limits(await get()) for _ in range(3)] == [
            ("3", "2", "60"),
            ("3", "1", "60"),
            ("3", "0", "60"),
        ]
        throttled = await get()
        assert_error(throttled, 429, "ThrottlerException")
        assert limits(throttled) == ("3", "0", "60")
        assert "retry-after" not in throttled.headers
        assert (await get("k2")).status_code == 200  # buckets are per key
        clock.advance(59)
        still = await get()
        assert (still.status_code, limits(still)) == (429, ("3", "0", "1"))
        clock.advance(1)
        again = await get()
        assert (again.status_code, limits(again)) == (200, ("3", "2", "60"))
        clock.advance(30)
        assert limits(await get()) == ("3", "1", "30")  # fixed window: reset counts down
        clock.advance(30)
        assert limits(await get()) == ("3", "2", "60")  # a new window, no block
        assert sandbox.requests.calls(status=429) == 2


async def test_anonymous_callers_share_a_bucket(clock: ManualClock) -> None:
    async with (
        serve_sandbox(clock=clock, latency=(0, 0), rate_limit_per_minute=1) as sandbox,
        httpx.AsyncClient(base_url=sandbox.url, headers=SLOTS_HEADERS) as client,
    ):
        params: Params = {"eventTypeId": 1001, **TUESDAY}
        assert (await client.get("/v2/slots", params=params)).status_code == 200
        assert (await client.get("/v2/event-types/1001")).status_code == 429


async def test_no_rate_limit_sends_no_headers(client: httpx.AsyncClient) -> None:
    response = await slots(client, eventTypeId=1001, **TUESDAY)
    assert not [h for h in response.headers if h.lower().startswith("x-ratelimit")]


def test_latency_must_be_an_ordered_non_negative_pair() -> None:
    calendar = default_calendar(ManualClock(NOW))
    with pytest.raises(ValueError, match="latency"):
        Sandbox(calendar, latency=(0.5, 0.1))
    with pytest.raises(ValueError, match="latency"):
        Sandbox(calendar, latency=(-1, 0))


# -- test hooks ---------------------------------------------------------------


async def test_fail_next_forces_statuses_then_recovers(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    params: Params = {"eventTypeId": 1001, **TUESDAY}
    sandbox.fail_next(503)
    assert_error(await client.get("/v2/slots", params=params), 503, "ServiceUnavailableException")
    sandbox.fail_next(500, b"<html>upstream exploded", count=2)
    for _ in range(2):
        garbage = await client.get("/v2/slots", params=params)
        assert (garbage.status_code, garbage.content) == (500, b"<html>upstream exploded")
    sandbox.fail_next(200, {"status": "success", "data": {"not-a-date": 1}})
    assert (await client.get("/v2/slots", params=params)).json()["data"] == {"not-a-date": 1}
    sandbox.fail_next(429)
    assert_error(await client.get("/v2/slots", params=params), 429, "ThrottlerException")
    assert (await client.get("/v2/slots", params=params)).status_code == 200
    sandbox.fail_next(500, path="/v2/event-types")
    assert (await client.get("/v2/slots", params=params)).status_code == 200
    assert (await client.get("/v2/event-types/1001", headers=EVENT_TYPE_HEADERS)).status_code == 500
    assert [r.status for r in sandbox.requests] == [503, 500, 500, 200, 429, 200, 200, 500]


async def test_fail_next_can_send_calcoms_rate_limit_headers(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    sandbox.fail_next(429, headers={"X-RateLimit-Reset-Default": "7"})
    response = await client.get("/v2/slots", params={"eventTypeId": 1001, **TUESDAY})
    assert_error(response, 429, "ThrottlerException")
    assert response.headers["x-ratelimit-reset-default"] == "7"


async def test_flaky_fails_every_other_request_until_reset(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    params: Params = {"eventTypeId": 1001, **TUESDAY}
    sandbox.flaky(502)
    statuses = [(await client.get("/v2/slots", params=params)).status_code for _ in range(6)]
    assert statuses == [502, 200] * 3
    event_type = await client.get("/v2/event-types/1001", headers=EVENT_TYPE_HEADERS)
    assert event_type.status_code == 200  # only its path is flaky
    sandbox.clear_faults()
    assert (await client.get("/v2/slots", params=params)).status_code == 200
    assert len(sandbox.requests) == 8  # clearing faults keeps the log


async def test_trickle_drips_the_body_until_stopped(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    expected = await data(client, eventTypeId=1001, **TUESDAY)
    trickle = sandbox.trickle(interval=60)
    received: list[bytes] = []
    first_byte = asyncio.Event()

    async def read() -> bytes:
        async with client.stream(
            "GET", "/v2/slots", params={"eventTypeId": 1001, **TUESDAY}
        ) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                received.append(chunk)
                first_byte.set()
        return b"".join(received)

    reading = asyncio.create_task(read())
    await asyncio.wait_for(first_byte.wait(), 5)
    assert received == [b"{"]  # the rest would take minutes
    trickle.stop()
    body = await asyncio.wait_for(reading, 5)
    assert json.loads(body)["data"] == expected


async def test_an_outage_lasts_until_its_faults_are_cleared(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    params: Params = {"eventTypeId": 1001, **TUESDAY}
    sandbox.fail_next(503, count=1_000_000)
    for _ in range(3):
        assert (await client.get("/v2/slots", params=params)).status_code == 503
    sandbox.clear_faults()
    assert (await client.get("/v2/slots", params=params)).status_code == 200


async def test_hold_freezes_a_response_in_flight(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    nine = "2026-11-24T09:00:00.000Z"
    hold = sandbox.hold()
    in_flight = asyncio.create_task(slots(client, eventTypeId=1001, **TUESDAY))
    await asyncio.wait_for(hold.arrived(), 5)
    assert not in_flight.done()
    assert sandbox.requests.calls() == 1  # logged on arrival
    sandbox.calendar.book(1001, datetime(2026, 11, 24, 9, tzinfo=UTC))
    # Other paths are not held.
    event_type = await client.get("/v2/event-types/1001", headers=EVENT_TYPE_HEADERS)
    assert event_type.status_code == 200
    hold.release()
    held = await asyncio.wait_for(in_flight, 5)
    assert nine in starts(held.json()["data"])  # computed when it arrived
    assert nine not in starts(await data(client, eventTypeId=1001, **TUESDAY))


async def test_hold_parks_every_request_until_released(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    with sandbox.hold() as hold:
        tasks = [asyncio.create_task(slots(client, eventTypeId=1001, **TUESDAY)) for _ in range(3)]
        await asyncio.wait_for(hold.arrived(3), 5)
        assert not any(t.done() for t in tasks)
    responses = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert hold.released


async def test_shutdown_releases_held_requests(clock: ManualClock) -> None:
    async with httpx.AsyncClient(headers=SLOTS_HEADERS) as client:
        async with asyncio.timeout(5), serve_sandbox(clock=clock, latency=(0, 0)) as sandbox:
            hold = sandbox.hold()
            url = f"{sandbox.url}/v2/slots"
            in_flight = asyncio.create_task(
                client.get(url, params={"eventTypeId": 1001, **TUESDAY})
            )
            await hold.arrived()
        assert hold.released
        assert (await asyncio.wait_for(in_flight, 5)).status_code == 200


async def test_request_log_records_what_tests_need(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    await slots(client, eventTypeId=1001, **TUESDAY)
    await slots(client, eventTypeId=1002, **TUESDAY)
    await client.get("/v2/event-types/1001", headers=EVENT_TYPE_HEADERS)
    first = sandbox.requests[0]
    assert (first.method, first.path, first.status, first.at) == ("GET", "/v2/slots", 200, NOW)
    assert first.query == {"eventTypeId": "1001", "start": "2026-11-24", "end": "2026-11-24"}
    assert (first.api_version, first.authorized) == ("2024-09-04", False)
    assert sum(1 for r in sandbox.requests if r.path == "/v2/slots") == 2
    assert sandbox.requests.calls() == 2
    assert sandbox.requests.calls(None) == 3
    assert sandbox.requests.calls("/v2/event-types/1001", status=200) == 1
    sandbox.reset()
    assert len(sandbox.requests) == 0


# -- GET /v2/event-types/{id} ------------------------------------------------------------


async def event_type(client: httpx.AsyncClient, event_type_id: int) -> Json:
    response = await client.get(f"/v2/event-types/{event_type_id}", headers=EVENT_TYPE_HEADERS)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def test_event_types_name_their_hosts(client: httpx.AsyncClient) -> None:
    intro = (await event_type(client, 1001))["data"]
    assert (intro["id"], intro["lengthInMinutes"], intro["ownerId"], intro["users"]) == (
        1001,
        30,
        1,
        ["alice"],
    )
    assert "lengthInMinutesOptions" not in intro
    assert (await event_type(client, 1003))["data"]["lengthInMinutesOptions"] == [15, 30, 60]
    assert (await event_type(client, 1004))["data"]["seats"]["seatsPerTimeSlot"] == 3
    team = (await event_type(client, 1005))["data"]
    assert (team["ownerId"], team["teamId"], team["schedulingType"]) == (None, 501, "collective")
    assert [(h["userId"], h["name"]) for h in team["hosts"]] == [(1, "Alice"), (2, "Bob")]


async def test_event_type_errors(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.get("/v2/event-types/4242", headers=EVENT_TYPE_HEADERS),
        404,
        "NotFoundException",
    )
    assert_error(
        await client.get("/v2/event-types/x", headers=EVENT_TYPE_HEADERS),
        400,
        "BadRequestException",
    )
    assert_error(await client.get("/v2/event-types/1001"), 400, "BadRequestException", "2024-06-14")


# -- bookings (demo surface) -------------------------------------------------------------


async def test_bookings_create_reschedule_cancel(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    nine, ten = "2026-11-24T09:00:00.000Z", "2026-11-24T10:00:00.000Z"
    attendee = {"name": "Ada", "email": "ada@example.com", "timeZone": "Europe/London"}
    request = {"start": "2026-11-24T09:00:00Z", "eventTypeId": 1001, "attendee": attendee}
    created = await client.post("/v2/bookings", json=request, headers=BOOKING_HEADERS)
    assert created.status_code == 201, created.text
    booking = created.json()["data"]
    assert (booking["start"], booking["status"], booking["duration"]) == (nine, "accepted", 30)
    assert booking["attendees"][0]["email"] == "ada@example.com"
    assert nine not in starts(await data(client, eventTypeId=1001, **TUESDAY))
    again = await client.post("/v2/bookings", json=request, headers=BOOKING_HEADERS)
    assert_error(again, 400, "BadRequestException", "not available")

    moved = await client.post(
        f"/v2/bookings/{booking['uid']}/reschedule",
        json={"start": "2026-11-24T10:00:00Z"},
        headers=BOOKING_HEADERS,
    )
    assert moved.status_code == 201, moved.text
    new = moved.json()["data"]
    assert (new["start"], new["rescheduledFromUid"]) == (ten, booking["uid"])
    assert new["attendees"][0]["name"] == "Ada"
    open_now = starts(await data(client, eventTypeId=1001, **TUESDAY))
    assert nine in open_now
    assert ten not in open_now

    cancelled = await client.post(
        f"/v2/bookings/{new['uid']}/cancel",
        json={"cancellationReason": "ill"},
        headers=BOOKING_HEADERS,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["data"]["status"], cancelled.json()["data"]["cancellationReason"]) == (
        "cancelled",
        "ill",
    )
    assert ten in starts(await data(client, eventTypeId=1001, **TUESDAY))
    missing = await client.post("/v2/bookings/nope/cancel", headers=BOOKING_HEADERS)
    assert_error(missing, 404, "NotFoundException")
    assert [b.status for b in sandbox.calendar.bookings] == ["cancelled", "cancelled"]


async def test_booking_input_errors(client: httpx.AsyncClient) -> None:
    post = client.post
    assert_error(
        await post("/v2/bookings", content=b"{", headers=BOOKING_HEADERS),
        400,
        "BadRequestException",
    )
    no_attendee = {"start": "2026-11-24T09:00:00Z", "eventTypeId": 1001}
    assert_error(
        await post("/v2/bookings", json=no_attendee, headers=BOOKING_HEADERS),
        400,
        "BadRequestException",
    )
    by_slug = {
        "start": "2026-11-24T09:00:00Z",
        "eventTypeSlug": "intro-30",
        "username": "alice",
        "attendee": {"name": "A", "email": "a@b.c"},
    }
    assert (await post("/v2/bookings", json=by_slug, headers=BOOKING_HEADERS)).status_code == 201
    assert_error(await post("/v2/bookings", json=by_slug), 400, "BadRequestException", "2024-08-13")


# -- contract: Cal.com's OpenAPI documents ---------------------------------------------


def slots_200_schema() -> Json:
    spec = slots_spec()
    schema: Json = spec["paths"]["/v2/slots"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


def alternative(title_word: str) -> Json:
    return next(alt for alt in slots_200_schema()["oneOf"] if title_word in alt["title"])


def nullable_refs(node: Any) -> Any:
    """Let ``nullable`` beside ``allOf`` admit null, as Cal.com (NestJS) means it.

    Strict OAS 3.0.3 ignores ``nullable`` without a sibling ``type``, yet Cal.com
    marks e.g. ``recurrence`` that way and sends ``null`` for it.
    """
    if isinstance(node, list):
        return [nullable_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: nullable_refs(value) for key, value in node.items()}
    if node.get("nullable") and "allOf" in node and "type" not in node:
        rest = {key: value for key, value in node.items() if key != "nullable"}
        return {"anyOf": [{"enum": [None], "nullable": True}, rest]}
    return node


@functools.cache
def component_validator(name: str) -> OAS30Validator:
    """A validator for one component schema, resolving its $refs within the whole spec."""
    components = nullable_refs(event_types_spec()["components"])
    return OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": components})


@pytest.mark.parametrize("fmt", ["time", "range"])
async def test_slots_responses_match_calcoms_published_examples(
    client: httpx.AsyncClient, sandbox: RunningSandbox, fmt: str
) -> None:
    sandbox.calendar.book(1004, datetime(2026, 11, 24, 15, tzinfo=UTC))  # a seat with a bookingUid
    example = alternative("Range" if fmt == "range" else "Default")["example"]
    example_keys = {key for items in example["data"].values() for item in items for key in item}
    for event_type_id in sandbox.calendar.event_types:
        for zone in ("UTC", "Europe/Rome", "America/New_York", "Asia/Kolkata"):
            params: Params = {"eventTypeId": event_type_id, "timeZone": zone, "format": fmt}
            response = await slots(client, start="2026-11-23", end="2026-11-27", **params)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json")
            body = response.json()
            assert set(body) == set(example)
            assert body["status"] == example["status"]
            for day, items in body["data"].items():
                assert re.fullmatch(r"\d{4}-\d\d-\d\d", day)
                assert items, "days without slots are absent"
                for item in items:
                    assert example_keys <= set(item) <= example_keys | SEAT_KEYS
                    assert (set(item) > example_keys) == (event_type_id == 1004)
                    assert all(CALCOM_TIME.match(item[k]) for k in ("start", "end") if k in item)
                    assert item["start"].startswith(day)
            if body["data"]:
                # The spec's "time" alternative says items are strings while its own
                # example (and Cal.com) sends {"start": ...} objects: such data matches
                # exactly the object alternative, so the oneOf as a whole holds.
                OAS30Validator(slots_200_schema()).validate(body["data"])
                OAS30Validator(alternative("Range")).validate(body["data"])
            else:
                assert event_type_id == 1006


def test_the_examples_themselves_look_like_the_sandbox_output() -> None:
    time_example = alternative("Default")["example"]["data"]["2050-09-05"][0]
    range_example = alternative("Range")["example"]["data"]["2050-09-05"][0]
    assert set(time_example) == {"start"}
    assert set(range_example) == {"start", "end"}
    assert CALCOM_TIME.match(time_example["start"])


@pytest.mark.parametrize("event_type_id", [1001, 1002, 1003, 1004, 1006, 1007])
async def test_event_type_responses_validate_against_the_spec(
    client: httpx.AsyncClient, event_type_id: int
) -> None:
    component_validator("GetEventTypeOutput_2024_06_14").validate(
        await event_type(client, event_type_id)
    )


async def test_team_event_type_response_validates_against_the_team_schema(
    client: httpx.AsyncClient,
) -> None:
    body = await event_type(client, 1005)
    data = body["data"]
    # The spec types team hosts as strings; Cal.com sends objects, which adapters read.
    component_validator("TeamEventTypeOutput_2024_06_14").validate({**data, "hosts": []})
    assert all({"userId", "name"} <= set(h) for h in data["hosts"])
    assert set(body) == {"status", "data"}


async def test_booking_response_validates_against_the_spec(client: httpx.AsyncClient) -> None:
    request = {
        "start": "2026-11-24T09:00:00Z",
        "eventTypeId": 1001,
        "attendee": {"name": "A", "email": "a@b.c"},
    }
    created = await client.post("/v2/bookings", json=request, headers=BOOKING_HEADERS)
    component_validator("BookingOutput_2024_08_13").validate(created.json()["data"])
