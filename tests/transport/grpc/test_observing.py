"""The RPC observer: every call counted; one log line per call at the level its outcome
deserves, except fast-lane hits, of which one in ``hit_log_every`` is logged (sampled)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from availability.adapters.observability.metrics import ServiceMetrics
from availability.config import Settings
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.server import open_service
from availability.transport.grpc.observing import SLOW_HIT_SECONDS, FastHit, RpcObserver
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_metrics import Exposition
from tests.test_server import request

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub

DAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))


def rpc_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "availability.rpc"]


async def test_at_warning_only_failures_are_logged(
    stub: Stub, sandbox: RunningSandbox, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="availability.rpc")
    sandbox.fail_next(503, count=3)  # every attempt the retries make
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetSlots(request(1001, *DAY))  # cold, and Cal.com fails: Unavailable
    clock.advance(1.0)  # past the failure memory
    await stub.GetSlots(request(1001, *DAY))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetSlots(request(1001, *DAY, time_zone="Mars/Base"))  # the caller's fault
    (line,) = rpc_lines(caplog)
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "GetSlots Unavailable"
    fields = line.fields  # type: ignore[attr-defined]
    assert fields["status"] == "Unavailable"
    assert "503" in fields["error"]
    assert fields["event_type_id"] == 1001


async def test_at_info_every_call_off_the_fast_lane_is_one_line_and_health_checks_are_quiet(
    stub: Stub, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="availability.rpc")
    await stub.GetSlots(request(1001, *DAY), metadata=(("x-request-id", "r" * 300),))
    await stub.GetSlots(request(1001, *DAY))
    # The typeshed stub of HealthStub declares no methods: call the path directly.
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    await check(health_pb2.HealthCheckRequest())
    first, second = (line.fields for line in rpc_lines(caplog))  # type: ignore[attr-defined]
    assert [first["status"], second["status"]] == ["OK", "OK"]
    assert [first["source"], second["source"]] == ["upstream", "cache"]
    assert first["request_id"] == "r" * 64 + "...(+236 chars)"  # the caller's, bounded
    assert second["request_id"] not in ("", first["request_id"])  # made up: it sent none


def fields_of(line: logging.LogRecord) -> Mapping[str, Any]:
    fields: Mapping[str, Any] = line.fields  # type: ignore[attr-defined]
    return fields


@pytest.mark.parametrize(
    ("every", "level"), [(3, logging.INFO), (0, logging.INFO), (3, logging.DEBUG)]
)
async def test_fast_lane_hits_are_all_counted_and_one_in_n_is_logged_at_info(
    settings: Settings,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    every: int,
    level: int,
) -> None:
    caplog.set_level(level, logger="availability.rpc")
    calls, fast_hits = 8, 6  # a miss, a normal-path hit (it makes the entry), then the lane
    async with (
        open_service(settings.model_copy(update={"hit_log_every": every}), clock=clock) as service,
        grpc.aio.insecure_channel(service.target) as channel,
    ):
        stub = pb_grpc.AvailabilityServiceStub(channel)
        for call in range(calls):
            await stub.GetSlots(request(1001, *DAY))
            if call == 0:
                await service.cache.idle()  # the hosts' look-up behind the cold answer
        assert service.hit_memo is not None
        assert service.hit_memo.hits == fast_hits
        seen = Exposition((await service.metrics.exposition())[0].decode())

    # Counted like every call: started, handled, timed; and as cache answers and hits.
    labels = {"grpc_method": "GetSlots"}
    assert seen.by("grpc_server_handled_total", "grpc_code", **labels) == {"OK": calls}
    assert seen.total("grpc_server_started_total", **labels) == calls
    assert seen.total("grpc_server_handling_seconds_count", **labels) == calls
    assert seen.by("availability_answers_total", "source")["cache"] == calls - 1
    # DAY (24 hours from 06:00 UTC) spans two UTC buckets.
    assert seen.by("availability_cache_lookups_total", "result")["hit"] == 2 * (calls - 1)

    lines = [(line.levelno, fields_of(line)) for line in rpc_lines(caplog)]
    normal = [fields for _, fields in lines if not fields.get("fast_lane")]
    assert [fields["source"] for fields in normal] == ["upstream", "cache"]
    lane = [(levelno, fields) for levelno, fields in lines if fields.get("fast_lane")]
    sampled = [fields for levelno, fields in lane if levelno == logging.INFO]
    assert [fields["sampled"] for fields in sampled] == [every] * (
        fast_hits // every if every else 0
    )
    for fields in sampled:  # the normal path's fields, from what the entry kept
        assert fields["status"] == "OK"
        assert fields["source"] == "cache"
        assert (fields["event_type_id"], fields["days"], fields["fresh"]) == (1001, 1, False)
        assert fields["request_id"]
    # At DEBUG every hit has its line: the sampled ones at INFO, the rest at DEBUG.
    assert len(lane) == (fast_hits if level == logging.DEBUG else len(sampled))
    assert all(levelno == logging.DEBUG for levelno, f in lane if f["sampled"] is None)


async def test_a_slow_fast_lane_hit_is_logged_at_info_whatever_the_sampling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="availability.rpc")
    metrics = ServiceMetrics(process_metrics=False)
    observer = RpcObserver(metrics, logged_services=("test.Lane",), hit_log_every=0)
    slow = True

    def answer(raw: bytes) -> FastHit | None:
        began = time.perf_counter()
        while slow and time.perf_counter() - began <= SLOW_HIT_SECONDS:
            pass  # stalls the loop as a long GC pause would
        return raw, {"event_type_id": 7}, 1.5

    async def normal(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise AssertionError("every call is a fast-lane hit")

    whole: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(normal)
    server = grpc.aio.server()
    server.add_registered_method_handlers(
        "test.Lane", {"Get": observer.fast_lane("/test.Lane/Get", whole, answer, normal)}
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/test.Lane/Get"
            )
            assert await call(b"slow") == b"slow"
            slow = False
            assert await call(b"quick") == b"quick"
    finally:
        await server.stop(0)
    (line,) = rpc_lines(caplog)
    fields = fields_of(line)
    assert line.levelno == logging.INFO
    assert fields["duration_ms"] > SLOW_HIT_SECONDS * 1000
    assert (fields["fast_lane"], fields["sampled"], fields["age"]) == (True, None, 1.5)
    assert fields["event_type_id"] == 7
    seen = Exposition((await metrics.exposition())[0].decode())
    assert seen.by("grpc_server_handled_total", "grpc_code", grpc_method="Get") == {"OK": 2}
