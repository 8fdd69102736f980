"""Never offer a taken slot: host-wide invalidation, single-flight and FRESH reads,
end to end over the real server and the sandbox on loopback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest

from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_server import answer_starts, request, truth, ts

ALICE_30, ALICE_60, BOB_SEATED, TEAM = 1001, 1002, 1004, 1005
TUESDAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))
AT_14 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub


def starts(response: pb.GetSlotsResponse) -> set[int]:
    return {s for _, day in answer_starts(response) for s in day}


async def invalidate(
    stub: Stub, event_type_id: int, start: int, end: int
) -> pb.InvalidateSlotsResponse:
    return await stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(
            event_type_id=event_type_id,
            start=ts(datetime.fromtimestamp(start, UTC)),
            end=ts(datetime.fromtimestamp(end, UTC)),
        )
    )


async def test_booking_30_min_removes_the_same_hosts_60_min_slot(
    stub: Stub, sandbox: RunningSandbox
) -> None:
    for et in (ALICE_30, ALICE_60, BOB_SEATED):
        await stub.GetSlots(request(et, *TUESDAY))
    sixty = await stub.GetSlots(request(ALICE_60, *TUESDAY))
    assert int(AT_14.timestamp()) in starts(sixty)

    booking = sandbox.calendar.book(ALICE_30, AT_14)
    sandbox.requests.clear()
    done = await invalidate(stub, ALICE_30, booking.start, booking.end)
    assert {ALICE_30, ALICE_60} <= set(done.event_type_ids)
    assert BOB_SEATED not in done.event_type_ids

    sixty = await stub.GetSlots(request(ALICE_60, *TUESDAY))
    assert int(AT_14.timestamp()) not in starts(sixty)
    assert answer_starts(sixty) == truth(sandbox, ALICE_60, *TUESDAY)
    assert sandbox.requests.calls("/v2/slots") == 1
    bob = await stub.GetSlots(request(BOB_SEATED, *TUESDAY))
    assert bob.freshness.source == pb.Freshness.SOURCE_CACHE
    assert sandbox.requests.calls("/v2/slots") == 1


async def test_team_event_type_follows_its_members_bookings(
    stub: Stub, sandbox: RunningSandbox
) -> None:
    before = await stub.GetSlots(request(TEAM, *TUESDAY))
    taken = min(starts(before))
    booking = sandbox.calendar.book(ALICE_30, taken)
    await invalidate(stub, ALICE_30, booking.start, booking.end)
    after = await stub.GetSlots(request(TEAM, *TUESDAY))
    assert taken not in starts(after)
    assert answer_starts(after) == truth(sandbox, TEAM, *TUESDAY)


async def test_cancellation_and_reschedule_use_the_same_path(
    stub: Stub, sandbox: RunningSandbox
) -> None:
    booking = sandbox.calendar.book(ALICE_30, AT_14)
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    sandbox.calendar.cancel(booking.uid)
    await invalidate(stub, ALICE_30, booking.start, booking.end)
    assert int(AT_14.timestamp()) in starts(await stub.GetSlots(request(ALICE_30, *TUESDAY)))

    booking = sandbox.calendar.book(ALICE_30, AT_14)
    await invalidate(stub, ALICE_30, booking.start, booking.end)
    wednesday = NOW + timedelta(days=2)
    await stub.GetSlots(request(ALICE_30, TUESDAY[0], wednesday + timedelta(days=1)))
    moved = sandbox.calendar.reschedule(booking.uid, AT_14 + timedelta(days=1))
    await invalidate(stub, ALICE_30, booking.start, booking.end)  # the old window...
    await invalidate(stub, ALICE_30, moved.start, moved.end)  # ...and the new one
    after = await stub.GetSlots(request(ALICE_30, TUESDAY[0], wednesday + timedelta(days=1)))
    assert int(AT_14.timestamp()) in starts(after)
    assert moved.start not in starts(after)


async def test_hundred_concurrent_cold_reads_cost_one_upstream_call(
    stub: Stub, sandbox: RunningSandbox
) -> None:
    hold = sandbox.hold()
    calls = [asyncio.ensure_future(stub.GetSlots(request(ALICE_30, *TUESDAY))) for _ in range(100)]
    while sandbox.requests.calls("/v2/slots") == 0:  # noqa: ASYNC110 (another server's state)
        await asyncio.sleep(0.01)
    hold.release()
    answers = await asyncio.gather(*calls)
    assert sandbox.requests.calls("/v2/slots") == 1
    # The host look-up that scopes invalidation is one call too, shared the same way.
    assert sandbox.requests.calls(f"/v2/event-types/{ALICE_30}") == 1
    assert all(a.days == answers[0].days for a in answers)
    assert answers[0].days


async def test_freshness_for_cold_warm_and_fresh_reads(
    stub: Stub, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    cold = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert cold.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    assert cold.freshness.age.ToTimedelta() == timedelta(0)
    assert cold.freshness.fetched_at.ToSeconds() == int(clock())

    clock.advance(25)
    warm = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert warm.freshness.source == pb.Freshness.SOURCE_CACHE
    assert warm.freshness.age.ToTimedelta() == timedelta(seconds=25)
    assert warm.freshness.fetched_at == cold.freshness.fetched_at

    sandbox.calendar.book(ALICE_30, AT_14)  # nobody reports it
    fresh = await stub.GetSlots(request(ALICE_30, *TUESDAY, consistency=pb.CONSISTENCY_FRESH))
    assert fresh.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    assert fresh.freshness.fetched_at.ToSeconds() == int(clock())
    assert answer_starts(fresh) == truth(sandbox, ALICE_30, *TUESDAY)
    cached = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert cached.freshness.source == pb.Freshness.SOURCE_CACHE
    assert answer_starts(cached) == answer_starts(fresh)


async def test_host_and_everything_scopes_over_grpc(stub: Stub, sandbox: RunningSandbox) -> None:
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    done = await stub.InvalidateSlots(pb.InvalidateSlotsRequest(host_ids=[1]))
    assert done.all_dates
    assert list(done.host_ids) == [1]
    assert ALICE_30 in done.event_type_ids
    everything = await stub.InvalidateSlots(pb.InvalidateSlotsRequest(everything=True))
    assert everything.everything
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.InvalidateSlots(pb.InvalidateSlotsRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
