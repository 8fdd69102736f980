"""The real server against a Cal.com that fails in bulk: a flaky one, a storm of 500s,
askers of an unknown event type, and more misses than it should wait for at once.

Time is the server's ManualClock wherever the behaviour depends on it (failure
memory, breaker intervals, the budget's window); real time only for gRPC deadlines.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.sandbox import EventType, RunningSandbox
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.test_fault_matrix import FAILURE_CODES, utc_day
from tests.test_server import ALICE_30, answer_starts, request, truth

UNKNOWN = 987654


async def test_a_flaky_cal_com_does_not_fail_cold_reads(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    sandbox.flaky(500, every=2)  # every other /v2/slots call fails
    for days_ahead in range(1, 6):
        window = utc_day(days_ahead)
        answer = await stub.GetSlots(request(ALICE_30, *window), timeout=2.0)
        assert answer.freshness.source == pb.Freshness.SOURCE_UPSTREAM
        assert answer_starts(answer) == truth(sandbox, ALICE_30, *window)
    assert sandbox.requests.calls("/v2/slots", status=500) == 5
    assert sandbox.requests.calls("/v2/slots", status=200) == 5


async def test_a_storm_of_500s_costs_about_one_call_per_bucket_per_second(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    sandbox: RunningSandbox,
    service: RunningService,
    clock: ManualClock,
) -> None:
    buckets = [utc_day(d) for d in range(1, 5)]
    sandbox.fail_next(500, count=10**6)
    storm_began = clock()
    codes: Counter[grpc.StatusCode] = Counter()

    async def caller(n: int) -> None:
        try:
            await stub.GetSlots(request(ALICE_30, *buckets[n % 4]), timeout=2.0)
        except grpc.aio.AioRpcError as error:
            codes[error.code()] += 1

    for _ in range(50):  # 20 callers, asking every 0.1 s for 5 s
        await asyncio.gather(*(caller(n) for n in range(20)))
        clock.advance(0.1)

    assert set(codes) <= set(FAILURE_CODES)
    assert sum(codes.values()) == 20 * 50
    calls = [r for r in sandbox.requests if r.path == "/v2/slots"]
    per_bucket_second = Counter((r.query["start"], int(r.at - storm_began)) for r in calls)
    assert len(calls) <= 4 * 5  # was 118 before failures were remembered and a breaker opened
    assert max(per_bucket_second.values()) <= 3  # the first second: retries before it opened

    sandbox.reset()  # Cal.com is healthy again
    clock.advance(5)
    recovered = await stub.GetSlots(request(ALICE_30, *utc_day(6)), timeout=2.0)
    assert recovered.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    for window in buckets:  # the storm's buckets too: the budget was not burnt
        answer = await stub.GetSlots(request(ALICE_30, *window), timeout=2.0)
        assert answer_starts(answer) == truth(sandbox, ALICE_30, *window)
    assert service.resilience.breaker.state.value == "closed"


async def test_fifty_asks_for_an_unknown_event_type_cost_one_round_trip(
    stub: pb_grpc.AvailabilityServiceAsyncStub, sandbox: RunningSandbox
) -> None:
    async def ask() -> tuple[grpc.StatusCode, str]:
        try:
            await stub.GetSlots(request(UNKNOWN, *utc_day(1)))
        except grpc.aio.AioRpcError as error:
            return error.code(), (error.details() or "").split(":")[0]
        return grpc.StatusCode.OK, ""

    together = await asyncio.gather(*(ask() for _ in range(25)))
    one_by_one = [await ask() for _ in range(25)]
    assert set(together + one_by_one) == {(grpc.StatusCode.NOT_FOUND, "event_type_id")}
    # A never-seen id's slots are fetched first and its hosts looked up only after they
    # came: the 404 is the one call, and it is remembered.
    assert sandbox.requests.calls("/v2/slots") == 1
    assert sandbox.requests.calls(None) == 1

    # The booking service creates it and says so: the negative entry goes.
    sandbox.calendar.add_event_type(EventType(UNKNOWN, "new-30", "New", 30, (1,)))
    await stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=UNKNOWN))
    answer = await stub.GetSlots(request(UNKNOWN, *utc_day(1)))
    assert answer_starts(answer) == truth(sandbox, UNKNOWN, *utc_day(1))


async def test_past_the_pending_limit_new_misses_are_shed_and_hits_served(
    settings: Settings, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    shedding = settings.model_copy(update={"max_pending_misses": 2})
    async with (
        open_service(shedding, clock=clock) as service,
        grpc.aio.insecure_channel(service.target) as channel,
    ):
        stub = pb_grpc.AvailabilityServiceStub(channel)
        cached = await stub.GetSlots(request(ALICE_30, *utc_day(1)))
        with sandbox.hold() as hold:
            waiting = [
                asyncio.ensure_future(stub.GetSlots(request(ALICE_30, *utc_day(d)), timeout=10))
                for d in (2, 3)
            ]
            await asyncio.wait_for(hold.arrived(2), 10)
            with pytest.raises(grpc.aio.AioRpcError) as shed:
                await stub.GetSlots(request(ALICE_30, *utc_day(4)), timeout=2.0)
            assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "waiting for Cal.com" in (shed.value.details() or "")
            hit = await stub.GetSlots(request(ALICE_30, *utc_day(1)))
            assert hit.freshness.source == pb.Freshness.SOURCE_CACHE
            assert answer_starts(hit) == answer_starts(cached)
        for task in waiting:
            assert (await task).freshness.source == pb.Freshness.SOURCE_UPSTREAM
        assert service.cache.shed == 1
        assert sandbox.requests.calls("/v2/slots") == 3  # the shed miss never reached Cal.com


async def test_a_call_without_a_deadline_gets_the_default_one(
    settings: Settings, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    quick = settings.model_copy(update={"default_deadline": 0.5})
    async with (
        open_service(quick, clock=clock) as service,
        grpc.aio.insecure_channel(service.target) as channel,
    ):
        stub = pb_grpc.AvailabilityServiceStub(channel)
        with sandbox.hold():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetSlots(request(ALICE_30, *utc_day(1)))  # no timeout at all
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "deadline" in (caught.value.details() or "")
