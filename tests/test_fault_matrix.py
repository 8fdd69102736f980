"""The fault-injection matrix: the real server against a misbehaving Cal.com over real HTTP.

For each fault class (500, 502, 503, no answer, a body trickling in, a garbage body, a
body of the wrong shape, connection reset, connection refused, 429 with Cal.com's
rate-limit headers, and a flaky Cal.com failing every other call), three buckets are
read at once while the fault lasts:

- **warm-expired**: fetched, then past its TTL (on the server's ManualClock), not
  invalidated: served SOURCE_STALE with OK at least 0.5 s before a 3 s deadline;
- **cold**: never fetched: UNAVAILABLE or RESOURCE_EXHAUSTED with a message that says
  what happened, at least 0.2 s before a 2 s deadline;
- **invalidated**: fetched, then a booking on its day was reported: never served
  again (its old slots would include the booked one).

No traceback is logged, health stays SERVING, and once the fault clears the reads
return the truth. A flaky Cal.com is retried through: every read succeeds.

gRPC deadlines are real time, so the margins are measured with ``time.monotonic()``
around each call; they are behaviour (an answer before the caller gives up), with
bounds generous enough for a loaded machine, not a speed benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW, PER_DAY
from tests.helpers.fault_proxy import FaultProxy
from tests.test_server import ALICE_30, answer_starts, request, truth, ts


def utc_day(days_ahead: int) -> tuple[datetime, datetime]:
    """One whole UTC day: one bucket, so the three reads share none."""
    start = NOW.replace(hour=0) + timedelta(days=days_ahead)
    return start, start + timedelta(days=1)


WARM, INVALIDATED, COLD = utc_day(1), utc_day(2), utc_day(3)
PAST_TTL = 61  # a near day's TTL is 60 s; max_stale is 300 s
FOREVER = 10**6
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit-Default": "120",
    "X-RateLimit-Remaining-Default": "0",
    "X-RateLimit-Reset-Default": "5",
}
FAILURE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class Fault:
    name: str
    start: Callable[[RunningSandbox, FaultProxy], Awaitable[Callable[[], Awaitable[None]]]]
    """Injects the fault; returns what clears it."""
    reads_succeed: bool = False


def sandbox_fault(
    status: int, body: str | dict[str, object] | None = None, **headers: str
) -> Callable[[RunningSandbox, FaultProxy], Awaitable[Callable[[], Awaitable[None]]]]:
    async def start(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
        sandbox.fail_next(status, body, count=FOREVER, headers=headers or RATE_LIMIT_HEADERS)

        async def clear() -> None:
            sandbox.reset()

        return clear

    return start


async def stall(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
    hold = sandbox.hold()

    async def clear() -> None:
        hold.release()

    return clear


async def trickle(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
    dripping = sandbox.trickle(interval=0.2)

    async def clear() -> None:
        dripping.stop()

    return clear


async def reset(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
    await proxy.reset()
    return proxy.heal


async def refuse(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
    await proxy.refuse()
    return proxy.heal


async def flaky(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
    sandbox.flaky(500, every=2)

    async def clear() -> None:
        sandbox.reset()

    return clear


def plain(status: int) -> Fault:
    async def start(sandbox: RunningSandbox, proxy: FaultProxy) -> Callable[[], Awaitable[None]]:
        sandbox.fail_next(status, count=FOREVER)

        async def clear() -> None:
            sandbox.reset()

        return clear

    return Fault(f"http-{status}", start)


FAULTS = [
    plain(500),
    plain(502),
    plain(503),
    Fault("no-answer", stall),
    Fault("slow-body", trickle),
    Fault("garbage-body", sandbox_fault(200, "<html><body>Bad gateway</body></html>")),
    Fault("wrong-json-shape", sandbox_fault(200, {"status": "success", "data": [1, 2, 3]})),
    Fault("connection-reset", reset),
    Fault("connection-refused", refuse),
    Fault("429-rate-limited", sandbox_fault(429)),
    Fault("flaky", flaky, reads_succeed=True),
]


@pytest.fixture
async def proxy(sandbox: RunningSandbox) -> AsyncIterator[FaultProxy]:
    port = urlsplit(sandbox.url).port
    assert port is not None
    async with FaultProxy(port) as running:
        yield running


@pytest.fixture
def settings(proxy: FaultProxy) -> Settings:
    return Settings(
        grpc_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        calcom_url=proxy.url,
        shutdown_grace=1,
        shutdown_drain=0,
        **PER_DAY,  # "a cold bucket" is a day nobody read
    )


@dataclass
class Outcome:
    elapsed: float
    response: pb.GetSlotsResponse | None = None
    error: grpc.aio.AioRpcError | None = None


async def timed(call: Awaitable[pb.GetSlotsResponse]) -> Outcome:
    started = time.monotonic()
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        return Outcome(time.monotonic() - started, error=error)
    return Outcome(time.monotonic() - started, response=response)


def assert_refused_in_time(outcome: Outcome, deadline: float) -> None:
    assert outcome.error is not None, "a bucket that cannot be had must not be served"
    assert outcome.error.code() in FAILURE_CODES
    message = outcome.error.details() or ""
    assert message.startswith("Cal.com: ")
    assert "Traceback" not in message
    assert outcome.elapsed <= deadline - 0.2, f"answered {outcome.elapsed:.2f} s after the call"


async def serving(channel: grpc.aio.Channel) -> bool:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply = await check(health_pb2.HealthCheckRequest(service=""))
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
async def test_fault(
    fault: Fault,
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    channel: grpc.aio.Channel,
    sandbox: RunningSandbox,
    proxy: FaultProxy,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    warm_before = await stub.GetSlots(request(ALICE_30, *WARM))
    invalidated_before = await stub.GetSlots(request(ALICE_30, *INVALIDATED))
    clock.advance(PAST_TTL)
    taken = invalidated_before.days[0].slots[1]
    booking = sandbox.calendar.book(ALICE_30, taken.start.seconds)
    await stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(
            event_type_id=ALICE_30,
            start=ts(datetime.fromtimestamp(booking.start, UTC)),
            end=ts(datetime.fromtimestamp(booking.end, UTC)),
        )
    )

    clear = await fault.start(sandbox, proxy)
    reads = [(WARM, 3.0), (COLD, 2.0), (INVALIDATED, 2.0)]
    if fault.reads_succeed:
        # One reader at a time: "every other call fails" holds per reader only then. With
        # three fetches retrying at once, one reader's attempts can all land on failing turns.
        warm, cold, invalidated = [
            await timed(stub.GetSlots(request(ALICE_30, *window), timeout=deadline))
            for window, deadline in reads
        ]
    else:
        warm, cold, invalidated = await asyncio.gather(
            *(
                timed(stub.GetSlots(request(ALICE_30, *window), timeout=deadline))
                for window, deadline in reads
            )
        )
    assert await serving(channel)

    if fault.reads_succeed:
        for outcome, window in ((warm, WARM), (cold, COLD), (invalidated, INVALIDATED)):
            assert outcome.response is not None, outcome.error
            assert outcome.response.freshness.source == pb.Freshness.SOURCE_UPSTREAM
            assert answer_starts(outcome.response) == truth(sandbox, ALICE_30, *window)
    else:
        assert warm.response is not None, warm.error
        assert warm.response.freshness.source == pb.Freshness.SOURCE_STALE
        assert answer_starts(warm.response) == answer_starts(warm_before)
        assert warm.elapsed <= 3.0 - 0.5, f"stale after {warm.elapsed:.2f} s"
        assert_refused_in_time(cold, 2.0)
        assert_refused_in_time(invalidated, 2.0)

    await clear()
    clock.advance(10)  # past failure memory, the breaker's interval and a 429's reset
    for window in (WARM, COLD, INVALIDATED):
        after = await stub.GetSlots(request(ALICE_30, *window), timeout=3.0)
        assert after.freshness.source != pb.Freshness.SOURCE_STALE
        assert answer_starts(after) == truth(sandbox, ALICE_30, *window)
    assert taken.start.seconds not in [
        s for _, day in answer_starts(after) for s in day
    ]  # the booked slot never came back
    assert await serving(channel)
    assert "Traceback" not in caplog.text
    assert "ExecuteBatchError" not in caplog.text
