"""The budget-saving defaults at server level: a read fetches its whole window in one
Cal.com call, and a key read shortly before it expires is refreshed in the background
(the core's own tests: tests/core/test_windows.py, tests/core/test_refresh_ahead.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import grpc
import httpx
import pytest

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_metrics import scrape
from tests.test_server import ALICE_30, answer_starts, request, truth


@pytest.fixture
async def defaults(sandbox: RunningSandbox, clock: ManualClock) -> AsyncIterator[RunningService]:
    settings = Settings(
        grpc_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        calcom_url=sandbox.url,
        shutdown_grace=1,
        shutdown_drain=0,
    )
    assert settings.fetch_windows
    assert settings.refresh_ahead > 0
    async with open_service(settings, clock=clock) as service:
        yield service


def day(n: int) -> tuple[datetime, datetime]:
    start = NOW + timedelta(days=n)
    return start, start + timedelta(days=1)


async def test_any_day_of_the_week_costs_the_week_one_call(
    defaults: RunningService, sandbox: RunningSandbox
) -> None:
    async with grpc.aio.insecure_channel(defaults.target) as channel:
        stub = pb_grpc.AvailabilityServiceStub(channel)
        await stub.GetSlots(request(ALICE_30, *day(2)))
        await defaults.cache.idle()
        for n in range(7):
            answer = await stub.GetSlots(request(ALICE_30, *day(n)))
            assert answer.freshness.source == pb.Freshness.SOURCE_CACHE, n
            assert answer_starts(answer) == truth(sandbox, ALICE_30, *day(n))
        assert sandbox.requests.calls("/v2/slots") == 1


async def test_a_hot_day_is_refreshed_before_it_expires(
    defaults: RunningService, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    ttl = Settings.model_fields["ttl_near"].default
    async with grpc.aio.insecure_channel(defaults.target) as channel:
        stub = pb_grpc.AvailabilityServiceStub(channel)
        await stub.GetSlots(request(ALICE_30, *day(1)))
        await defaults.cache.idle()
        for _ in range(4):  # read at 90 % of each TTL, four TTLs running
            clock.advance(0.9 * ttl)
            answer = await stub.GetSlots(request(ALICE_30, *day(1)))
            assert answer.freshness.source == pb.Freshness.SOURCE_CACHE
            await defaults.cache.idle()
        # One cold call, then one background refresh per TTL: no caller waited.
        assert sandbox.requests.calls("/v2/slots") == 1 + 4
    async with httpx.AsyncClient(base_url=defaults.http_url) as http:
        exposed = await scrape(http)
    assert exposed.total("availability_refreshes_ahead_total") == 4
    assert exposed.total("availability_budget_deferred_total") == 0
