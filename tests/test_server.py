"""The real server on port 0 against the sandbox over loopback HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from availability.config import Settings
from availability.core.adaptive_ttl import AdaptiveTtl
from availability.core.clock import ManualClock
from availability.core.ttl import TieredTtl
from availability.sandbox import RunningSandbox
from availability.server import RunningService, ttl_policy
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW

ALICE_30 = 1001
ALICE_60 = 1002
BOB_SEATED = 1004
MULTI = 1003
NEVER = 1006


def ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def request(
    event_type_id: int,
    start: datetime,
    end: datetime,
    time_zone: str = "",
    **kwargs: object,
) -> pb.GetSlotsRequest:
    return pb.GetSlotsRequest(
        event_type_id=event_type_id,
        start=ts(start),
        end=ts(end),
        time_zone=time_zone,
        **kwargs,  # type: ignore[arg-type]
    )


def answer_starts(response: pb.GetSlotsResponse) -> list[tuple[str, list[int]]]:
    return [(day.date, [slot.start.seconds for slot in day.slots]) for day in response.days]


def truth(
    sandbox: RunningSandbox,
    event_type_id: int,
    start: datetime,
    end: datetime,
    zone: str = "UTC",
    duration: int = 0,
) -> list[tuple[str, list[int]]]:
    """What Cal.com would offer for [start, end), grouped by local date in ``zone``."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    slots = sandbox.calendar.slots(event_type_id, lo, hi - 1, duration_minutes=duration)
    days: dict[str, list[int]] = {}
    for slot in slots:
        local = datetime.fromtimestamp(slot.start, ZoneInfo(zone)).date().isoformat()
        days.setdefault(local, []).append(slot.start)
    return sorted(days.items())


WEEK = (NOW, NOW + timedelta(days=7))


@pytest.mark.parametrize("zone", ["", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
async def test_get_slots_equals_the_sandbox_and_repeats_are_hits(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox, zone: str
) -> None:
    response = await stub.GetSlots(request(ALICE_30, *WEEK, time_zone=zone))
    expected = truth(sandbox, ALICE_30, *WEEK, zone or "UTC")
    assert expected  # the fixture offers alice's slots this week
    assert answer_starts(response) == expected
    assert response.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    calls = sandbox.requests.calls("/v2/slots")
    assert calls == 1

    again = await stub.GetSlots(request(ALICE_30, *WEEK, time_zone=zone))
    sub = await stub.GetSlots(
        request(ALICE_30, NOW + timedelta(days=1, hours=3), NOW + timedelta(days=2), zone)
    )
    assert answer_starts(again) == expected
    assert again.freshness.source == pb.Freshness.SOURCE_CACHE
    assert answer_starts(sub) == truth(
        sandbox, ALICE_30, NOW + timedelta(days=1, hours=3), NOW + timedelta(days=2), zone or "UTC"
    )
    assert sandbox.requests.calls("/v2/slots") == calls


async def test_slots_carry_end_and_seats(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    response = await stub.GetSlots(request(BOB_SEATED, *WEEK))
    slot = response.days[0].slots[0]
    assert slot.end.seconds - slot.start.seconds == 3600
    assert slot.HasField("seats")
    assert (slot.seats.total, slot.seats.booked, slot.seats.remaining) == (3, 0, 3)


async def test_duration_selects_the_multi_duration_length(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    response = await stub.GetSlots(request(MULTI, *WEEK, duration_minutes=60))
    assert answer_starts(response) == truth(sandbox, MULTI, *WEEK, duration=60)
    slot = response.days[0].slots[0]
    assert slot.end.seconds - slot.start.seconds == 3600


async def test_never_available_event_type_is_empty(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
) -> None:
    response = await stub.GetSlots(request(NEVER, *WEEK))
    assert list(response.days) == []
    assert response.freshness.source == pb.Freshness.SOURCE_UPSTREAM


async def test_booking_then_invalidate_removes_the_slot_and_spares_other_days(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    before = await stub.GetSlots(request(ALICE_30, *WEEK))
    target = before.days[1].slots[2]
    other_day = before.days[3].date
    booking = sandbox.calendar.book(ALICE_30, target.start.seconds)
    sandbox.requests.clear()

    result = await stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(
            event_type_id=ALICE_30,
            start=ts(datetime.fromtimestamp(booking.start, UTC)),
            end=ts(datetime.fromtimestamp(booking.end, UTC)),
            reason="booking_created",
        )
    )
    assert list(result.dates) == [before.days[1].date]
    assert list(result.event_type_ids) == [ALICE_30]

    after = await stub.GetSlots(request(ALICE_30, *WEEK))
    assert target.start.seconds not in [s for _, day in answer_starts(after) for s in day]
    assert answer_starts(after) == truth(sandbox, ALICE_30, *WEEK)
    assert sandbox.requests.calls("/v2/slots") == 1  # only the invalidated day

    day = datetime.fromisoformat(other_day).replace(tzinfo=UTC)
    await stub.GetSlots(request(ALICE_30, day, day + timedelta(days=1)))
    assert sandbox.requests.calls("/v2/slots") == 1


async def test_invalidate_without_range_drops_all_days(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    await stub.GetSlots(request(ALICE_30, *WEEK))
    result = await stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=ALICE_30))
    assert result.all_dates
    assert list(result.dates) == []
    await stub.GetSlots(request(ALICE_30, *WEEK))
    assert sandbox.requests.calls("/v2/slots") == 2


async def test_ttl_expiry_refetches_on_the_injected_clock(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    day = (NOW + timedelta(days=1), NOW + timedelta(days=2))
    await stub.GetSlots(request(ALICE_30, *day))
    clock.advance(59)
    hit = await stub.GetSlots(request(ALICE_30, *day))
    assert hit.freshness.source == pb.Freshness.SOURCE_CACHE
    assert hit.freshness.age.seconds == 59
    clock.advance(1)
    miss = await stub.GetSlots(request(ALICE_30, *day))
    assert miss.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    assert sandbox.requests.calls("/v2/slots") == 2


def _violation(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    fields: list[str] = []
    assert status is not None
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        fields.extend(v.field for v in bad.field_violations)
    return error.code(), error.details() or "", fields


BAD_REQUESTS = [
    ("event_type_id", request(0, *WEEK)),
    ("event_type_id", request(-5, *WEEK)),
    ("start", pb.GetSlotsRequest(event_type_id=ALICE_30, end=ts(NOW))),
    ("end", pb.GetSlotsRequest(event_type_id=ALICE_30, start=ts(NOW))),
    ("end", request(ALICE_30, NOW, NOW)),
    ("end", request(ALICE_30, NOW, NOW - timedelta(hours=1))),
    ("end", request(ALICE_30, NOW, NOW + timedelta(days=91))),
    ("time_zone", request(ALICE_30, *WEEK, time_zone="Mars/Olympus")),
    ("time_zone", request(ALICE_30, *WEEK, time_zone="../etc/passwd")),
    ("time_zone", request(ALICE_30, *WEEK, time_zone="Europe")),  # a directory of the zone db
    ("time_zone", request(ALICE_30, *WEEK, time_zone="x" * 300)),  # too long for a file name
    ("duration_minutes", request(ALICE_30, *WEEK, duration_minutes=-1)),
    ("duration_minutes", request(ALICE_30, *WEEK, duration_minutes=1441)),
]


@pytest.mark.parametrize(("field", "bad"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    sandbox: RunningSandbox,
    field: str,
    bad: pb.GetSlotsRequest,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(bad)
    code, message, fields = _violation(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith(f"{field}:")
    assert fields == [field]
    assert sandbox.requests.calls(None) == 0


async def test_range_of_exactly_the_maximum_is_accepted(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
) -> None:
    await stub.GetSlots(request(NEVER, NOW, NOW + timedelta(days=90)))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("event_type_id", pb.InvalidateSlotsRequest(event_type_id=0)),
        ("end", pb.InvalidateSlotsRequest(event_type_id=1, start=ts(NOW))),
        ("start", pb.InvalidateSlotsRequest(event_type_id=1, end=ts(NOW))),
        ("end", pb.InvalidateSlotsRequest(event_type_id=1, start=ts(NOW), end=ts(NOW))),
    ],
)
async def test_bad_invalidation_is_invalid_argument(
    stub: pb_grpc.AvailabilityServiceAsyncStub, field: str, bad: pb.InvalidateSlotsRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.InvalidateSlots(bad)
    code, message, fields = _violation(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == [field]
    assert message.startswith(f"{field}:")


async def test_unknown_event_type_is_not_found(stub: pb_grpc.AvailabilityServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(request(987654, *WEEK))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "event_type_id" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, grpc.StatusCode.UNAVAILABLE),
        (429, grpc.StatusCode.UNAVAILABLE),
        (500, grpc.StatusCode.UNAVAILABLE),
        (401, grpc.StatusCode.FAILED_PRECONDITION),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_upstream_failures_map_to_status_codes(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    sandbox: RunningSandbox,
    status: int,
    code: grpc.StatusCode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox.fail_next(status, count=10)  # more than the retries: 5xx are retried
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(request(ALICE_30, *WEEK))
    assert caught.value.code() == code
    assert "Traceback" not in caplog.text


async def test_stale_bucket_served_while_cal_com_is_down(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    day = (NOW + timedelta(days=1), NOW + timedelta(days=2))
    fresh = await stub.GetSlots(request(ALICE_30, *day))
    clock.advance(90)
    sandbox.fail_next(503, count=10)
    stale = await stub.GetSlots(request(ALICE_30, *day))
    assert stale.freshness.source == pb.Freshness.SOURCE_STALE
    assert stale.freshness.age.seconds == 90
    assert answer_starts(stale) == answer_starts(fresh)


async def test_deadline_bounds_the_wait_for_cal_com(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    hold = sandbox.hold()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSlots(request(ALICE_30, *WEEK), timeout=0.5)
        # Our answer, before the deadline: never the caller's DEADLINE_EXCEEDED.
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "deadline" in (caught.value.details() or "")
    finally:
        hold.release()


async def test_health_and_graceful_stop(
    service: RunningService, channel: grpc.aio.Channel, sandbox: RunningSandbox
) -> None:
    # The typeshed stub of HealthStub declares no methods: call the path directly.
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    for name in ("", "availability.v1.AvailabilityService"):
        reply = await check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    stub = pb_grpc.AvailabilityServiceStub(channel)
    hold = sandbox.hold()
    in_flight = asyncio.ensure_future(stub.GetSlots(request(ALICE_30, *WEEK)))
    while sandbox.requests.calls("/v2/slots") == 0:  # noqa: ASYNC110 (another process's state)
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(service.stop(grace=5, drain=0.5))
    while True:
        reply = await check(health_pb2.HealthCheckRequest(service=""))
        if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.01)
    hold.release()
    response = await in_flight  # finished within the grace period
    assert response.days
    await stopping


def test_the_ttl_policy_setting_picks_the_policy_from_the_ttl_settings() -> None:
    tiers = TieredTtl(empty=20, near=45, far=200, near_days=3)

    def settings(policy: Literal["tiered", "adaptive"]) -> Settings:
        return Settings(
            ttl_policy=policy,
            ttl_empty=20,
            ttl_near=45,
            ttl_far=200,
            ttl_near_days=3,
            ttl_min=10,
            ttl_max=100,
            ttl_stale_cost=50,
        )

    assert ttl_policy(settings("tiered")) == tiers
    adaptive = ttl_policy(settings("adaptive"))
    assert isinstance(adaptive, AdaptiveTtl)
    assert (adaptive.tiers, adaptive.minimum, adaptive.maximum, adaptive.stale_cost) == (
        tiers,
        10,
        100,
        50,
    )
    with pytest.raises(ValueError, match="ttl_min"):
        Settings(ttl_min=100, ttl_max=10)
