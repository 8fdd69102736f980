"""Fuzzing the two doors of the real server: gRPC requests and Cal.com webhook deliveries.

Properties: the server never answers a client's mistake with INTERNAL or
UNKNOWN (gRPC) or a 5xx (HTTP), keeps serving, and never invalidates on a
delivery whose signature does not match. Cases per target: ``FUZZ_EXAMPLES``
(default 300, enough for CI); a deeper run::

    FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/transport/grpc/test_fuzz.py

takes about a minute per target (the per-test timeout grows with the count).
"""

from __future__ import annotations

import json
import os
import string
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from availability.adapters.calcom.webhooks import AVAILABILITY_TRIGGERS, signature
from availability.config import Settings
from availability.sandbox import RunningSandbox
from availability.server import RunningService
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_cli import SERVICE
from tests.test_invalidation import ALICE_30, AT_14, TUESDAY, starts
from tests.test_server import request
from tests.transport.http.test_webhooks import about, example

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    # One server serves every example: that it survives them all is the point.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 5))

SECRET = "fuzz-secret"
READER, WRITER = "fuzz-reader", "fuzz-writer"
# A client's mistake never earns these: they would mean the server failed.
SERVER_FAULTS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "api_tokens": SecretStr(f"{READER}:reader,{WRITER}:writer"),
        }
    )


def auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


# -- gRPC ----------------------------------------------------------------------

_INT64 = st.integers(-(2**63), 2**63 - 1)
_INT32 = st.integers(-(2**31), 2**31 - 1)
_NEAR = int(NOW.timestamp())


def mostly(plausible: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> Any:
    """Plausible three times in four: a wild value must get past the checks of other fields."""
    return st.one_of(plausible, plausible, plausible, wild)


event_type_ids = mostly(st.sampled_from([1001, 1002, 1003, 1004, 1005, 1006, 1007]), _INT64)
zones = mostly(
    st.sampled_from(["", "UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"]),
    st.one_of(
        st.sampled_from(["Europe", "America/Argentina", "right/UTC", "zone.tab", "x" * 300]),
        st.text(max_size=300),
    ),
)
nanos = mostly(st.just(0), st.one_of(st.integers(0, 999_999_999), _INT32))
tokens = mostly(
    st.sampled_from([READER, WRITER, WRITER]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
)


@st.composite
def windows(draw: st.DrawFn) -> tuple[Timestamp | None, Timestamp | None]:
    """Mostly a window near now of up to 100 days; sometimes anything a Timestamp can hold."""
    start = draw(st.integers(_NEAR - 2 * 86_400, _NEAR + 120 * 86_400))
    end = start + draw(mostly(st.integers(1, 100 * 86_400), st.integers(-3600, 0)))
    wild = st.one_of(st.none(), st.integers(-62_135_596_800, 253_402_300_799), _INT64)
    bounds: list[Timestamp | None] = []
    for seconds in (start, end):
        chosen = draw(mostly(st.just(seconds), wild))
        bounds.append(None if chosen is None else Timestamp(seconds=chosen, nanos=draw(nanos)))
    return bounds[0], bounds[1]


@st.composite
def get_slots_requests(draw: st.DrawFn) -> pb.GetSlotsRequest:
    consistency = draw(mostly(st.sampled_from(list(pb.Consistency.values())), _INT32))
    message = pb.GetSlotsRequest(
        event_type_id=draw(event_type_ids),
        time_zone=draw(zones),
        duration_minutes=draw(mostly(st.sampled_from([0, 15, 30, 60]), _INT32)),
        consistency=consistency,
    )
    start, end = draw(windows())
    if start is not None:
        message.start.CopyFrom(start)
    if end is not None:
        message.end.CopyFrom(end)
    return message


@st.composite
def invalidate_requests(draw: st.DrawFn) -> pb.InvalidateSlotsRequest:
    message = pb.InvalidateSlotsRequest(
        event_type_id=draw(mostly(event_type_ids, st.just(0))),
        host_ids=draw(st.lists(mostly(st.sampled_from([1, 2, 3]), _INT64), max_size=5)),
        everything=draw(st.booleans()),
        reason=draw(st.text(max_size=100)),
    )
    start, end = draw(windows())
    if start is not None:
        message.start.CopyFrom(start)
    if end is not None:
        message.end.CopyFrom(end)
    return message


async def assert_serving(channel: grpc.aio.Channel, sandbox: RunningSandbox) -> None:
    """Still SERVING, and no UNAVAILABLE above hid a request Cal.com would choke on."""
    assert not [r for r in sandbox.requests if r.status >= 500]
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply = await check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def assert_no_server_fault(error: grpc.aio.AioRpcError) -> None:
    assert error.code() not in SERVER_FAULTS, (error.code(), error.details())


@FUZZ
@given(message=get_slots_requests(), token=tokens)
async def test_fuzz_get_slots(
    stub: Stub,
    channel: grpc.aio.Channel,
    sandbox: RunningSandbox,
    message: pb.GetSlotsRequest,
    token: str,
) -> None:
    try:
        await stub.GetSlots(message, metadata=auth(token), timeout=30)
    except grpc.aio.AioRpcError as error:
        assert_no_server_fault(error)
    await assert_serving(channel, sandbox)


@FUZZ
@given(message=invalidate_requests(), token=tokens)
async def test_fuzz_invalidate_slots(
    stub: Stub,
    channel: grpc.aio.Channel,
    sandbox: RunningSandbox,
    message: pb.InvalidateSlotsRequest,
    token: str,
) -> None:
    code = grpc.StatusCode.OK
    try:
        await stub.InvalidateSlots(message, metadata=auth(token), timeout=30)
    except grpc.aio.AioRpcError as error:
        assert_no_server_fault(error)
        code = error.code()
    if token not in (READER, WRITER):
        assert code == grpc.StatusCode.UNAUTHENTICATED
    elif token == READER:
        assert code == grpc.StatusCode.PERMISSION_DENIED
    await assert_serving(channel, sandbox)


@FUZZ
@given(
    method=st.sampled_from(["GetSlots", "InvalidateSlots"]),
    raw=st.one_of(
        st.binary(max_size=512),
        # Valid messages with garbage appended: unknown fields, truncated fields.
        get_slots_requests().map(lambda m: m.SerializeToString()),
        invalidate_requests().map(lambda m: m.SerializeToString()),
    ),
    tail=st.binary(max_size=16),
)
async def test_fuzz_raw_request_bytes(
    channel: grpc.aio.Channel, sandbox: RunningSandbox, method: str, raw: bytes, tail: bytes
) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/{SERVICE}/{method}"
    )
    try:
        await call(raw + tail, metadata=auth(WRITER), timeout=30)
    except grpc.aio.AioRpcError as error:
        assert_no_server_fault(error)
    await assert_serving(channel, sandbox)


# -- webhooks --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
_FIELDS = [
    "eventTypeId",
    "startTime",
    "endTime",
    "organizer",
    "team",
    "uid",
    "rescheduleStartTime",
    "rescheduleEndTime",
]
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=40),
)


@st.composite
def deliveries(draw: st.DrawFn) -> bytes:
    """Cal.com's examples, with triggers and fields replaced, dropped or mistyped."""
    document: Any = example(draw(st.sampled_from(["BOOKING_CREATED", "BOOKING_RESCHEDULED"])))
    document["triggerEvent"] = draw(
        st.one_of(st.sampled_from([*sorted(AVAILABILITY_TRIGGERS), "PING"]), json_values)
    )
    payload = document["payload"]
    for field in draw(st.lists(st.sampled_from(_FIELDS), unique=True)):
        action = draw(st.sampled_from(["drop", "time", "int", "any"]))
        if action == "drop":
            payload.pop(field, None)
        elif action == "time":
            payload[field] = draw(times)
        elif action == "int":
            payload[field] = draw(st.one_of(st.integers(), st.sampled_from([1001, 1, 0, -1])))
        else:
            payload[field] = draw(json_values)
    if draw(st.booleans()):
        payload["team"] = {
            "members": draw(st.lists(st.one_of(json_values, st.builds(dict, id=json_values))))
        }
    if draw(st.integers(0, 9)) == 0:
        document = draw(json_values)
    text = json.dumps(document)  # NaN and Infinity included: Python's parser takes them
    return draw(st.one_of(st.just(text.encode()), st.binary(max_size=256)))


@pytest.fixture
async def http(service: RunningService) -> Any:
    async with httpx.AsyncClient(base_url=service.http_url, timeout=30) as client:
        yield client


@FUZZ
@given(body=deliveries())
async def test_fuzz_signed_deliveries(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(
        "/webhooks/calcom",
        content=body,
        headers={"X-Cal-Signature-256": signature(SECRET.encode(), body)},
    )
    assert response.status_code in (200, 400), (response.status_code, response.text)
    assert response.json()


# What HTTP lets a header value hold (h11 refuses to send anything else): VCHAR, SP, HTAB, obs-text.
header_bytes = st.binary(max_size=100).map(
    lambda b: bytes(c for c in b if c == 0x09 or 0x20 <= c != 0x7F).strip()
)
header_names = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20)


@FUZZ
@given(
    sig=st.one_of(
        header_bytes,
        st.text(string.hexdigits, min_size=64, max_size=64).map(str.encode),
    ),
    extra=st.dictionaries(header_names, header_bytes, max_size=3),
    retarget=st.booleans(),
)
async def test_fuzz_forged_signatures_never_invalidate(
    http: httpx.AsyncClient,
    stub: Stub,
    sandbox: RunningSandbox,
    sig: bytes,
    extra: dict[str, bytes],
    retarget: bool,
) -> None:
    """Deliveries that would drop a cached, booked slot, under any signature but the right one."""
    week = (TUESDAY[0], TUESDAY[0] + timedelta(days=7))
    if not any(b.active for b in sandbox.calendar.bookings):
        await stub.GetSlots(request(ALICE_30, *week), metadata=auth(READER))
        sandbox.calendar.book(ALICE_30, AT_14)
    booking = next(b for b in sandbox.calendar.bookings if b.active)
    body = about(booking, "BOOKING_CREATED" if retarget else "BOOKING_CANCELLED")
    headers = {k.encode(): v for k, v in extra.items() if k.lower() != "content-length"}
    headers[b"X-Cal-Signature-256"] = sig
    response = await http.post("/webhooks/calcom", content=body, headers=headers)
    assert response.status_code == 401, response.text

    calls = sandbox.requests.calls("/v2/slots")
    cached = await stub.GetSlots(request(ALICE_30, *week), metadata=auth(READER))
    assert cached.freshness.source == pb.Freshness.SOURCE_CACHE
    assert int(AT_14.timestamp()) in starts(cached)
    assert sandbox.requests.calls("/v2/slots") == calls
