"""The observing interceptor's log line: one per call, at the level its outcome deserves."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2

from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from tests.conftest import NOW
from tests.test_server import request

if TYPE_CHECKING:
    from availability.v1 import availability_pb2_grpc as pb_grpc

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


async def test_at_info_every_call_is_one_line_and_health_checks_are_quiet(
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
