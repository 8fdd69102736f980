"""What the servicer writes to the log about a call."""

from __future__ import annotations

import logging

import pytest

from availability.server import RunningService
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc

SERVICER_LOG = "availability.transport.grpc.servicer"


async def test_a_reason_with_a_newline_cannot_forge_a_log_line(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    service: RunningService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVICER_LOG)
    await stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=1001, reason="x\nFAKE LINE"))
    [record] = [r for r in caplog.records if r.name == SERVICER_LOG]
    message = record.getMessage()
    assert "\n" not in message
    assert "(reason: 'x\\nFAKE LINE')" in message


async def test_a_long_reason_is_cut_in_the_log(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    service: RunningService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVICER_LOG)
    await stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=1001, reason="r" * 50_000))
    [record] = [r for r in caplog.records if r.name == SERVICER_LOG]
    assert len(record.getMessage()) < 400
    assert "(50000 characters)" in record.getMessage()
