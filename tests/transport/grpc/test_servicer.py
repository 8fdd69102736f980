"""What the log says about a call: a caller's ``reason`` stays inside its own, bounded line."""

from __future__ import annotations

import logging

import pytest

from availability.adapters.observability.logs import TextFormatter
from availability.server import RunningService
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc

RPC_LOG = "availability.rpc"


def invalidation_line(caplog: pytest.LogCaptureFixture) -> str:
    [record] = [
        r for r in caplog.records if r.name == RPC_LOG and "InvalidateSlots" in r.getMessage()
    ]
    return TextFormatter().format(record)


async def test_a_reason_with_a_newline_cannot_forge_a_log_line(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    service: RunningService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=RPC_LOG)
    await stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=1001, reason="x\nFAKE LINE"))
    line = invalidation_line(caplog)
    assert "\n" not in line
    assert 'reason="x\\nFAKE LINE"' in line


async def test_a_long_reason_is_cut_in_the_log(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    service: RunningService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=RPC_LOG)
    await stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=1001, reason="r" * 50_000))
    line = invalidation_line(caplog)
    assert len(line) < 600
    assert "chars)" in line
