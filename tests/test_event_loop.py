"""The event loop ``serve`` runs on: uvloop where it is installed (or asked for), else
asyncio's."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from availability.config import UVLOOP_INSTALL_HINT, Settings
from availability.sandbox import serve_sandbox
from availability.v1 import availability_pb2 as pb
from tests.helpers.replicas import running_replicas
from tests.test_server import request

pytestmark = pytest.mark.timeout(60)


def test_auto_is_uvloop_when_it_is_installed_else_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().event_loop == "auto"
    assert Settings().uvloop  # the test install has the extra
    assert not Settings(event_loop="asyncio").uvloop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert not Settings().uvloop
    with pytest.raises(ValidationError, match=re.escape(UVLOOP_INSTALL_HINT)):
        Settings(event_loop="uvloop")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_serve_runs_on_the_loop_it_is_given_and_serves_from_its_cache(loop: str) -> None:
    tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        days=1
    )
    async with (
        serve_sandbox(latency=(0.0, 0.0), rate_limit_per_minute=None) as sandbox,
        running_replicas(
            1,
            cache_url="memory://",
            calcom_url=sandbox.url,
            env={"AVAILABILITY_EVENT_LOOP": loop.upper()},
        ) as (replica,),
    ):
        week = request(1001, tomorrow, tomorrow + timedelta(days=7))
        sources = [(await replica.stub.GetSlots(week, timeout=10)).freshness.source for _ in "abcd"]
        assert f"event_loop={loop}" in replica.log.text()
    # A miss; a read that waits for the hosts' look-up behind it (or hits what it stored);
    # a normal-path hit; a fast-lane hit.
    assert sources[0] == pb.Freshness.SOURCE_UPSTREAM
    assert sources[2:] == [pb.Freshness.SOURCE_CACHE, pb.Freshness.SOURCE_CACHE]
