"""The typed integrator's code (``typed_user.py``) runs against the real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from availability.sandbox import RunningSandbox
from availability.server import RunningService
from tests.clients import typed_user
from tests.conftest import NOW

AT_14 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


async def test_the_agent_turns(service: RunningService) -> None:
    # Alice's first slot after Monday 06:00 UTC: 09:00 Berlin time.
    said = await asyncio.to_thread(typed_user.agent_turn, service.target, 1001, NOW)
    assert said == "Monday 23 November at 09:00"
    assert await typed_user.agent_turn_async(service.target, 1001, NOW) == said
    seated = await typed_user.agent_turn_async(service.target, 1004, NOW)
    assert seated.endswith(", 3 seat(s) left")
    assert await asyncio.to_thread(typed_user.agent_turn, service.target, 987654, NOW) == (
        "no such event type"
    )
    assert await asyncio.to_thread(typed_user.agent_turn, service.target, -1, NOW) == (
        "bad request: event_type_id (1 violation(s))"
    )
    assert await typed_user.agent_turn_async(service.target, 0, NOW) == "failed: INVALID_ARGUMENT"
    never = await typed_user.agent_turn_async(service.target, 1006, NOW)
    assert never == "nothing free on the 0 day(s) I looked at"


async def test_the_booking_paths(service: RunningService, sandbox: RunningSandbox) -> None:
    done = await asyncio.to_thread(typed_user.book, service.target, 1001, AT_14, AT_14 + HALF_HOUR)
    assert done is not None
    assert 1001 in done.event_type_ids
    sandbox.calendar.book(1001, AT_14)  # taken at Cal.com meanwhile
    taken = await asyncio.to_thread(typed_user.book, service.target, 1001, AT_14, AT_14 + HALF_HOUR)
    assert taken is None
    moved = await typed_user.book_async(
        service.target, 1002, AT_14, AT_14 + 2 * HALF_HOUR, AT_14 + timedelta(days=1)
    )
    assert len(moved.dates) == 2
