"""Every limit is answered with a clear status, and the server carries on serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from pydantic import SecretStr

from availability.adapters.calcom.webhooks import signature
from availability.config import Settings
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_server import request

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub

DAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))


@pytest.fixture
async def limited(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[RunningService, Stub]]:
    small = settings.model_copy(
        update={
            "max_message_bytes": 1024,
            "max_concurrent_rpcs": 2,
            "webhook_max_body": 2048,
            "webhook_secret": SecretStr("limits"),
        }
    )
    async with (
        open_service(small, clock=clock) as service,
        grpc.aio.insecure_channel(service.target) as channel,
    ):
        yield service, pb_grpc.AvailabilityServiceStub(channel)


async def test_oversized_request_is_resource_exhausted(
    limited: tuple[RunningService, Stub],
) -> None:
    _, stub = limited
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(request(1001, *DAY, time_zone="x" * 2000))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await stub.GetSlots(request(1001, *DAY))).days


async def test_calls_beyond_the_concurrency_limit_are_resource_exhausted(
    limited: tuple[RunningService, Stub], sandbox: RunningSandbox
) -> None:
    service, stub = limited
    repeated = request(1003, *DAY)
    for _ in range(3):  # a miss, a normal-path hit, a fast-lane hit
        await stub.GetSlots(repeated)
    hold = sandbox.hold()
    busy = [asyncio.ensure_future(stub.GetSlots(request(et, *DAY))) for et in (1001, 1004)]
    await hold.arrived(2)  # both calls are inside the server, waiting on Cal.com
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(request(1002, *DAY))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A fast-lane hit takes no slot: the repeated request is still answered.
    assert service.hit_memo is not None
    hits = service.hit_memo.hits
    assert (await stub.GetSlots(repeated)).days
    assert service.hit_memo.hits == hits + 1
    hold.release()
    assert all(answer.days for answer in await asyncio.gather(*busy))
    assert (await stub.GetSlots(request(1002, *DAY))).days  # capacity is back


async def test_configured_webhook_body_limit(limited: tuple[RunningService, Stub]) -> None:
    service, _ = limited
    body = b'{"triggerEvent": "PING", "pad": "' + b"x" * 4096 + b'"}'
    async with httpx.AsyncClient(base_url=service.http_url) as http:
        response = await http.post(
            "/webhooks/calcom",
            content=body,
            headers={"X-Cal-Signature-256": signature(b"limits", body)},
        )
    assert response.status_code == 413


async def test_range_limit_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(request(1001, NOW, NOW + timedelta(days=91)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    done = await stub.InvalidateSlots(pb.InvalidateSlotsRequest(everything=True))
    assert done.everything
