"""Cal.com's webhook, end to end: signed deliveries built from Cal.com's own examples,
posted over loopback HTTP to the real server, checked through GetSlots against the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from availability.adapters.calcom.webhooks import BadDelivery, parse_delivery, signature
from availability.adapters.observability.logs import TextFormatter
from availability.config import Settings
from availability.core.cache import InvalidationScope
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.sandbox.calendar import Booking
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.helpers.calcom_fixtures import signature_vector, webhook_example
from tests.test_invalidation import ALICE_30, AT_14, TUESDAY, starts
from tests.test_server import answer_starts, request, truth

VECTOR = signature_vector()
SECRET = VECTOR.secret
ALICE_60 = 1002
ALICE = 1
WEDNESDAY_END = TUESDAY[1] + timedelta(days=1)

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_secret": SecretStr(SECRET)})


@pytest.fixture
async def http(service: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.http_url) as client:
        yield client


def example(trigger: str) -> dict[str, Any]:
    return webhook_example(trigger)


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def about(booking: Booking, trigger: str = "BOOKING_CREATED", **payload: Any) -> bytes:
    """Cal.com's example delivery for ``trigger``, rewritten to describe ``booking``."""
    document = example(trigger)
    document["payload"].update(
        eventTypeId=booking.event_type_id,
        startTime=iso(booking.start),
        endTime=iso(booking.end),
        uid=booking.uid,
        **payload,
    )
    document["payload"]["organizer"]["id"] = booking.host_ids[0]
    return json.dumps(document).encode()


async def post(
    http: httpx.AsyncClient, body: bytes, sig: str | bytes | None = "sign"
) -> httpx.Response:
    """POST ``body``, signed with the configured secret unless ``sig`` says otherwise."""
    headers = {b"Content-Type": b"application/json"}
    if sig == "sign":
        sig = signature(SECRET.encode(), body)
    if sig is not None:
        headers[b"X-Cal-Signature-256"] = sig.encode() if isinstance(sig, str) else sig
    return await http.post("/webhooks/calcom", content=body, headers=headers)


def test_signature_passes_calcoms_test_vector() -> None:
    raw = VECTOR.raw_body.encode()
    assert signature(VECTOR.secret.encode(), raw) == VECTOR.signature
    assert signature(b"another", raw) != VECTOR.signature


async def test_calcoms_signed_test_vector_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/webhooks/calcom",
        content=VECTOR.raw_body.encode(),
        headers={
            "Content-Type": "application/json",
            "X-Cal-Signature-256": VECTOR.signature,
            "X-Cal-Webhook-Version": "2021-10-20",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "invalidated"


async def test_signed_booking_created_removes_the_slot_host_wide(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox
) -> None:
    for event_type in (ALICE_30, ALICE_60):
        assert int(AT_14.timestamp()) in starts(await stub.GetSlots(request(event_type, *TUESDAY)))
    booking = sandbox.calendar.book(ALICE_30, AT_14)

    response = await post(http, about(booking))
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "invalidated"

    for event_type in (ALICE_30, ALICE_60):  # alice's 60-minute call shares her calendar
        after = await stub.GetSlots(request(event_type, *TUESDAY))
        assert int(AT_14.timestamp()) not in starts(after)
        assert answer_starts(after) == truth(sandbox, event_type, *TUESDAY)


async def test_booking_cancelled_frees_the_slot(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox
) -> None:
    booking = sandbox.calendar.book(ALICE_30, AT_14)
    assert int(AT_14.timestamp()) not in starts(await stub.GetSlots(request(ALICE_30, *TUESDAY)))
    sandbox.calendar.cancel(booking.uid)
    assert (await post(http, about(booking, "BOOKING_CANCELLED"))).status_code == 200
    assert int(AT_14.timestamp()) in starts(await stub.GetSlots(request(ALICE_30, *TUESDAY)))


async def test_booking_rescheduled_frees_the_old_slot_and_takes_the_new(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox
) -> None:
    old = sandbox.calendar.book(ALICE_30, AT_14)
    before = await stub.GetSlots(request(ALICE_30, TUESDAY[0], WEDNESDAY_END))
    new_start = int((AT_14 + timedelta(days=1)).timestamp())
    assert int(AT_14.timestamp()) not in starts(before)
    assert new_start in starts(before)

    new = sandbox.calendar.reschedule(old.uid, new_start)
    body = about(
        new,
        "BOOKING_RESCHEDULED",
        rescheduleUid=old.uid,
        rescheduleStartTime=iso(old.start),
        rescheduleEndTime=iso(old.end),
    )
    assert (await post(http, body)).status_code == 200

    after = await stub.GetSlots(request(ALICE_30, TUESDAY[0], WEDNESDAY_END))
    assert int(AT_14.timestamp()) in starts(after)
    assert new_start not in starts(after)
    assert answer_starts(after) == truth(sandbox, ALICE_30, TUESDAY[0], WEDNESDAY_END)


async def warm_then_book(stub: Stub, sandbox: RunningSandbox) -> Booking:
    """A cached Tuesday, and a booking on it that only an invalidation would reveal."""
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    return sandbox.calendar.book(ALICE_30, AT_14)


async def assert_not_invalidated(stub: Stub, sandbox: RunningSandbox) -> None:
    calls = sandbox.requests.calls("/v2/slots")
    cached = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert cached.freshness.source == pb.Freshness.SOURCE_CACHE
    assert int(AT_14.timestamp()) in starts(cached)  # the stale answer survived: no invalidation
    assert sandbox.requests.calls("/v2/slots") == calls


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: None, id="missing"),
        pytest.param(lambda body: "", id="empty"),
        pytest.param(lambda body: signature(b"not-the-secret", body), id="wrong-secret"),
        pytest.param(lambda body: signature(SECRET.encode(), body + b" "), id="other-body"),
        pytest.param(lambda body: signature(SECRET.encode(), body)[:-1], id="truncated"),
        pytest.param(lambda body: "no-secret-provided", id="calcom-without-secret"),
        pytest.param(lambda body: "é".encode("latin-1") * 64, id="not-ascii"),
    ],
)
async def test_bad_signatures_get_401_and_change_nothing(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox, forge: Any
) -> None:
    booking = await warm_then_book(stub, sandbox)
    body = about(booking)
    response = await post(http, body, sig=forge(body))
    assert response.status_code == 401
    await assert_not_invalidated(stub, sandbox)


async def test_signature_of_another_body_gets_401(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox
) -> None:
    booking = await warm_then_book(stub, sandbox)
    ping = json.dumps({"triggerEvent": "PING", "payload": {}}).encode()
    response = await post(http, about(booking), sig=signature(SECRET.encode(), ping))
    assert response.status_code == 401
    await assert_not_invalidated(stub, sandbox)


@pytest.mark.parametrize("trigger", ["PING", "MEETING_ENDED", "BOOKING_PAID", "FORM_SUBMITTED"])
async def test_other_triggers_are_acknowledged_and_ignored(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox, trigger: str
) -> None:
    booking = await warm_then_book(stub, sandbox)
    document = json.loads(about(booking))
    document["triggerEvent"] = trigger
    response = await post(http, json.dumps(document).encode())
    assert response.status_code == 200
    assert response.json() == {"result": "ignored"}
    await assert_not_invalidated(stub, sandbox)


async def test_a_repeated_delivery_is_harmless_and_free(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox
) -> None:
    booking = await warm_then_book(stub, sandbox)
    body = about(booking)
    assert (await post(http, body)).json()["result"] == "invalidated"
    refetched = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert refetched.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    assert int(AT_14.timestamp()) not in starts(refetched)

    again = await post(http, body)
    assert again.status_code == 200
    assert again.json()["result"] == "duplicate"
    calls = sandbox.requests.calls("/v2/slots")
    cached = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert cached.freshness.source == pb.Freshness.SOURCE_CACHE
    assert answer_starts(cached) == answer_starts(refetched)
    assert sandbox.requests.calls("/v2/slots") == calls


async def test_body_over_the_limit_gets_413_unread(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox
) -> None:
    booking = await warm_then_book(stub, sandbox)
    document = json.loads(about(booking))
    document["payload"]["padding"] = "x" * (5 * 2**20)
    huge = json.dumps(document).encode()
    assert (await post(http, huge)).status_code == 413  # Content-Length says so

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for start in range(0, len(huge), 2**16):
            yield huge[start : start + 2**16]

    streamed = await http.post(
        "/webhooks/calcom",
        content=chunks(),
        headers={"X-Cal-Signature-256": signature(SECRET.encode(), huge)},
    )
    assert streamed.status_code == 413
    await assert_not_invalidated(stub, sandbox)
    # Just under the limit is read (and then judged by its signature).
    assert (await post(http, b" " * 2**20, sig="0" * 64)).status_code == 401


def malformed(change: Any) -> bytes:
    document = example("BOOKING_CREATED")
    document["payload"].update(eventTypeId=ALICE_30, startTime=iso(int(AT_14.timestamp())))
    document["payload"]["endTime"] = iso(int(AT_14.timestamp()) + 1800)
    change(document)
    return json.dumps(document).encode()


MALFORMED = {
    "not-json": b'{"triggerEvent": "BOOKING_CREATED", ',
    "not-utf8": b"\xff\xfe{}",
    "an-array": b"[]",
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "no-trigger": malformed(lambda d: d.pop("triggerEvent")),
    "trigger-not-a-string": malformed(lambda d: d.update(triggerEvent=7)),
    "no-payload": malformed(lambda d: d.pop("payload")),
    "no-start": malformed(lambda d: d["payload"].pop("startTime")),
    "no-end": malformed(lambda d: d["payload"].pop("endTime")),
    "start-not-a-time": malformed(lambda d: d["payload"].update(startTime="tomorrow")),
    "start-without-offset": malformed(lambda d: d["payload"].update(startTime="2026-11-24T14:00")),
    "end-before-start": malformed(lambda d: d["payload"].update(endTime="2026-11-24T13:00:00Z")),
    "event-type-a-string": malformed(lambda d: d["payload"].update(eventTypeId="1001")),
    "event-type-a-bool": malformed(lambda d: d["payload"].update(eventTypeId=True)),
    "event-type-negative": malformed(lambda d: d["payload"].update(eventTypeId=-1)),
    "event-type-past-int64": malformed(lambda d: d["payload"].update(eventTypeId=2**63)),
    "organizer-a-list": malformed(lambda d: d["payload"].update(organizer=[1])),
    "nobody": malformed(lambda d: d["payload"].update(eventTypeId=None, organizer={})),
    "members-not-a-list": malformed(lambda d: d["payload"].update(team={"members": 3})),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_signed_deliveries_get_400_and_change_nothing(
    http: httpx.AsyncClient, stub: Stub, sandbox: RunningSandbox, body: bytes
) -> None:
    await warm_then_book(stub, sandbox)
    response = await post(http, body)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    await assert_not_invalidated(stub, sandbox)


async def test_without_a_secret_the_webhook_answers_503(
    settings: Settings, clock: ManualClock
) -> None:
    unsigned = settings.model_copy(update={"webhook_secret": None})
    body = json.dumps({"triggerEvent": "PING", "payload": {}}).encode()
    async with (
        open_service(unsigned, clock=clock) as service,
        httpx.AsyncClient(base_url=service.http_url) as http,
    ):
        for sig in (None, "no-secret-provided", signature(b"", body)):
            assert (await post(http, body, sig=sig)).status_code == 503


async def test_probes(http: httpx.AsyncClient, service: RunningService) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200
    assert (await http.get("/webhooks/calcom")).status_code == 405
    assert (await http.get("/nowhere")).status_code == 404
    await service.health.enter_graceful_shutdown()  # what SIGTERM does first
    assert (await http.get("/readyz")).status_code == 503
    assert (await http.get("/healthz")).status_code == 200


def test_examples_parse_into_the_scopes_invalidate_slots_would_use() -> None:
    created = parse_delivery(json.dumps(example("BOOKING_CREATED")).encode())
    start = datetime(2024, 1, 1, 10, tzinfo=UTC).timestamp()
    assert created.scopes == (InvalidationScope(123, (1,), start=start, end=start + 900),)
    assert created.booking_uid == "unique-booking-id"

    cancelled = parse_delivery(json.dumps(example("BOOKING_CANCELLED")).encode())
    start = datetime(2024, 1, 4, 10, tzinfo=UTC).timestamp()  # "+00:00", not "Z"
    assert cancelled.scopes == (InvalidationScope(100, (1,), start=start, end=start + 900),)

    moved = parse_delivery(json.dumps(example("BOOKING_RESCHEDULED")).encode())
    new = datetime(2024, 1, 10, 14, 30, tzinfo=UTC).timestamp()
    old = datetime(2024, 1, 5, 14, 30, tzinfo=UTC).timestamp()
    assert moved.scopes == (
        InvalidationScope(100, (1,), start=new, end=new + 900),
        InvalidationScope(100, (1,), start=old, end=old + 900),
    )


def test_team_members_are_hosts_too() -> None:
    document = example("BOOKING_CREATED")
    # Cal.com's CalendarEvent.team: {id, name, members: TeamMember[]}; TeamMember.id is optional.
    document["payload"]["team"] = {
        "id": 501,
        "name": "sales-team",
        "members": [
            {"id": 2, "name": "Bob", "email": "bob@example.com", "timeZone": "America/New_York"},
            {"name": "No Id", "email": "x@example.com", "timeZone": "UTC"},
            {"id": 7, "name": "Gil", "email": "gil@example.com", "timeZone": "UTC"},
        ],
    }
    [scope] = parse_delivery(json.dumps(document).encode()).scopes
    assert scope.host_ids == (1, 2, 7)  # the organizer, then members with an id; not the team id


def test_a_window_wider_than_a_year_invalidates_every_day() -> None:
    document = example("BOOKING_CREATED")
    document["payload"].update(startTime="0001-01-01T00:00:00Z", endTime="9999-12-31T00:00:00Z")
    [scope] = parse_delivery(json.dumps(document).encode()).scopes
    assert (scope.start, scope.end) == (None, None)


def test_bad_delivery_names_the_field() -> None:
    with pytest.raises(BadDelivery, match=r"^payload\.endTime: "):
        parse_delivery(MALFORMED["end-before-start"])


WEBHOOK_LOG = "availability.transport.http.webhooks"


async def test_caller_text_in_a_delivery_cannot_forge_a_log_line(
    http: httpx.AsyncClient, sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger=WEBHOOK_LOG)
    ignored = json.dumps({"triggerEvent": "PING\nFAKE LINE" + "z" * 5000, "payload": {}})
    assert (await post(http, ignored.encode())).json() == {"result": "ignored"}
    booking = sandbox.calendar.book(ALICE_30, AT_14)
    document = json.loads(about(booking))
    document["payload"]["uid"] = "uid\r\nFAKE LINE"
    applied = await post(http, json.dumps(document).encode())
    assert applied.json()["result"] == "invalidated"

    lines = [TextFormatter().format(r) for r in caplog.records if r.name == WEBHOOK_LOG]
    assert len(lines) == 2
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert '"PING\\nFAKE LINE' in lines[0]
    assert len(lines[0]) < 600  # the trigger is cut
    assert '"uid\\r\\nFAKE LINE"' in lines[1]
