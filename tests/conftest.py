"""Shared fixtures: a sandbox Cal.com over loopback HTTP and the real server on port 0.

Both run on one ManualClock fixed on a Monday morning, so "now", TTL expiry
and which slots have started are decided by the test, not the wall clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox, serve_sandbox
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.helpers.redis_db import MISSING_REDIS, redis_server_binary

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday, before anyone's working hours

PER_DAY: dict[str, Any] = {"fetch_windows": False, "refresh_ahead": 0.0}
"""Settings that make the service fetch only the days read (see ``settings``)."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW.timestamp())


@pytest.fixture
async def sandbox(clock: ManualClock) -> AsyncIterator[RunningSandbox]:
    async with serve_sandbox(clock=clock, latency=(0.0, 0.0), rate_limit_per_minute=None) as sb:
        yield sb


@pytest.fixture
def settings(sandbox: RunningSandbox) -> Settings:
    """The service against the sandbox, fetching only the days read and refreshing
    nothing ahead: server tests count calls per day read and expect a day nobody read
    to be cold. Whole windows and refresh-ahead (on by default) have their own tests,
    with the defaults (tests/test_windows_and_refresh.py)."""
    return Settings(
        grpc_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        calcom_url=sandbox.url,
        shutdown_grace=1,
        shutdown_drain=0,
        **PER_DAY,
    )


@pytest.fixture
async def service(settings: Settings, clock: ManualClock) -> AsyncIterator[RunningService]:
    async with open_service(settings, clock=clock) as running:
        yield running


@pytest.fixture
async def channel(service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(service.target) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.AvailabilityServiceAsyncStub:
    return pb_grpc.AvailabilityServiceStub(channel)


def pytest_configure(config: pytest.Config) -> None:
    # Fail at once, in one line, rather than skip: a suite that silently skipped its Redis
    # tests would pass on a machine that never exercised the shared tier.
    if redis_server_binary() is None:
        pytest.exit(MISSING_REDIS, returncode=4)
