"""What every client shares, against the real server: the bearer token and its role, one
channel shared by threads and tasks, and whose channel a client closes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from pydantic import SecretStr

from availability.config import Settings
from availability.server import RunningService
from availability_client import (
    AgentClient,
    AsyncAgentClient,
    AsyncBookingClient,
    BookingClient,
    PermissionDenied,
    Unauthenticated,
)
from tests.conftest import NOW

READER = "r3ader-t0ken-for-the-agent"
WRITER = "wr1ter-t0ken-for-the-booking-service"
DAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))
BOOKED = (NOW + timedelta(days=1, hours=8), NOW + timedelta(days=1, hours=8, minutes=30))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": SecretStr(f"{READER}:reader,{WRITER}:writer")})


async def test_tokens_and_roles_async(service: RunningService) -> None:
    async with AsyncAgentClient(service.target, token=READER) as agent:
        assert (await agent.get_slots(1001, *DAY)).days
    async with AsyncBookingClient(service.target, token=WRITER) as booking:
        assert 1001 in (await booking.booking_created(1001, *BOOKED)).event_type_ids
        assert isinstance(await booking.is_free(1001, *BOOKED), bool)
    async with AsyncBookingClient(service.target, token=READER) as reader:
        with pytest.raises(PermissionDenied, match="may not call InvalidateSlots"):
            await reader.booking_created(1001, *BOOKED)
    for token in (None, "n0t-a-t0ken"):
        async with AsyncAgentClient(service.target, token=token) as stranger:
            with pytest.raises(Unauthenticated, match="Bearer"):
                await stranger.get_slots(1001, *DAY)


async def test_tokens_and_roles_sync(service: RunningService) -> None:
    with AgentClient(service.target, token=READER) as agent:
        assert (await asyncio.to_thread(agent.get_slots, 1001, *DAY)).days
    with BookingClient(service.target, token=WRITER) as booking:
        done = await asyncio.to_thread(booking.booking_created, 1001, *BOOKED)
        assert 1001 in done.event_type_ids
    with BookingClient(service.target, token=READER) as reader, pytest.raises(PermissionDenied):
        await asyncio.to_thread(reader.booking_created, 1001, *BOOKED)
    with AgentClient(service.target) as stranger, pytest.raises(Unauthenticated):
        await asyncio.to_thread(stranger.get_slots, 1001, *DAY)


async def test_one_client_shared_by_threads(service: RunningService) -> None:
    with AgentClient(service.target, token=READER) as agent:
        answers = await asyncio.gather(
            *(asyncio.to_thread(agent.get_slots, 1001, *DAY) for _ in range(16))
        )
    assert answers[0].days
    assert all(answer.days == answers[0].days for answer in answers)


async def test_one_client_shared_by_tasks(service: RunningService) -> None:
    async with AsyncAgentClient(service.target, token=READER) as agent:
        answers = await asyncio.gather(*(agent.get_slots(1001, *DAY) for _ in range(50)))
    assert answers[0].days
    assert all(answer.days == answers[0].days for answer in answers)


async def test_a_client_closes_only_the_channel_it_opened(service: RunningService) -> None:
    async with grpc.aio.insecure_channel(service.target) as channel:
        async with AsyncAgentClient.from_channel(channel, token=READER) as borrowed:
            assert (await borrowed.get_slots(1001, *DAY)).days
        again = AsyncAgentClient.from_channel(channel, token=READER)
        assert (await again.get_slots(1001, *DAY)).days  # still open

    owned = AsyncAgentClient(service.target, token=READER)
    await owned.close()
    with pytest.raises(RuntimeError, match="this AsyncAgentClient is closed"):
        await owned.get_slots(1001, *DAY)


async def test_a_sync_client_closes_only_the_channel_it_opened(service: RunningService) -> None:
    with grpc.insecure_channel(service.target) as channel:
        with AgentClient.from_channel(channel, token=READER) as borrowed:
            assert (await asyncio.to_thread(borrowed.get_slots, 1001, *DAY)).days
        again = AgentClient.from_channel(channel, token=READER)
        assert (await asyncio.to_thread(again.get_slots, 1001, *DAY)).days

    with BookingClient(service.target, token=WRITER) as owned:
        pass
    with pytest.raises(RuntimeError, match="this BookingClient is closed"):
        owned.booking_created(1001, *BOOKED)
