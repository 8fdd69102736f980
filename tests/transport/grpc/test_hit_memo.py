"""The fast lane: repeated GetSlots answered from their raw bytes, through the real server."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest
from pydantic import SecretStr

from availability.adapters.stores.redis_store import RedisStore
from availability.adapters.stores.tiered import TieredStore
from availability.config import Settings
from availability.core.cache import SlotCache, SlotsQuery, Source
from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.server import RunningService
from availability.transport.grpc.hit_memo import HitMemo
from availability.transport.grpc.wire import (
    encode_cache_freshness,
    encode_freshness,
    fetched_at_field,
)
from availability.v1 import availability_pb2 as pb
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.redis_db import flushed_url
from tests.test_invalidation import ALICE_30, AT_14, TUESDAY
from tests.test_server import answer_starts, request, truth

if TYPE_CHECKING:
    from availability.v1 import availability_pb2_grpc as pb_grpc

    Stub = pb_grpc.AvailabilityServiceAsyncStub

REDIS_DB = 7

_PB_SOURCES = {
    Source.NONE: pb.Freshness.SOURCE_UNSPECIFIED,
    Source.CACHE: pb.Freshness.SOURCE_CACHE,
    Source.UPSTREAM: pb.Freshness.SOURCE_UPSTREAM,
    Source.STALE: pb.Freshness.SOURCE_STALE,
}


def protobufs_freshness(source: Source, fetched_at: float | None, age: float) -> bytes:
    message = pb.Freshness(source=_PB_SOURCES[source])
    if fetched_at is not None:
        message.fetched_at.FromNanoseconds(int(fetched_at * 1e9))
        message.age.FromNanoseconds(int(age * 1e9))
    return pb.GetSlotsResponse(freshness=message).SerializeToString()


def test_the_hand_encoded_freshness_is_protobufs_byte_for_byte() -> None:
    rng = random.Random(13)
    cases: list[tuple[Source, float | None, float]] = [
        (Source.NONE, None, 0.0),
        (Source.CACHE, 1_795_478_400.0, 0.0),
        (Source.UPSTREAM, 1_795_478_400.25, 0.0),
        (Source.STALE, 0.0, 0.0),
    ]
    for _ in range(500):
        cases.append(
            (
                rng.choice(list(Source)),
                rng.uniform(0, 4e9),
                rng.choice([0.0, rng.uniform(0, 1), rng.uniform(0, 1e6)]),
            )
        )
    for source, fetched_at, age in cases:
        expected = protobufs_freshness(source, fetched_at, age)
        assert encode_freshness(source, fetched_at, age) == expected
        if fetched_at is not None:  # the fast lane's form: fetched_at encoded once
            kept = fetched_at_field(fetched_at)
            assert encode_cache_freshness(kept, age) == protobufs_freshness(
                Source.CACHE, fetched_at, age
            )


def memo_of(service: RunningService) -> HitMemo:
    assert service.hit_memo is not None
    return service.hit_memo


async def test_a_repeat_is_a_fast_lane_hit_whose_age_stays_true(
    stub: Stub, service: RunningService, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    memo = memo_of(service)
    cold = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    warm = await stub.GetSlots(request(ALICE_30, *TUESDAY))  # the normal path keeps it
    assert memo.hits == 0
    clock.advance(7.5)
    again = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert memo.hits == 1
    assert answer_starts(again) == answer_starts(cold) == truth(sandbox, ALICE_30, *TUESDAY)
    assert again.freshness.source == pb.Freshness.SOURCE_CACHE
    assert again.freshness.fetched_at == warm.freshness.fetched_at
    assert again.freshness.age.ToTimedelta() == timedelta(seconds=7.5)
    # True to the millisecond: hits within one share the response, the next one moves on.
    clock.advance(0.0004)
    same = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert same.freshness.age.ToTimedelta() == timedelta(seconds=7.5)
    clock.advance(0.0008)
    later = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert later.freshness.age.ToTimedelta() == timedelta(seconds=7.501)
    assert answer_starts(later) == answer_starts(cold)
    assert memo.hits == 3
    assert sandbox.requests.calls("/v2/slots") == 1


async def test_an_invalidation_or_a_fresh_read_voids_what_the_fast_lane_keeps(
    stub: Stub, service: RunningService, sandbox: RunningSandbox
) -> None:
    memo = memo_of(service)
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    sandbox.calendar.book(ALICE_30, AT_14)
    start, end = TUESDAY
    window = request(ALICE_30, start, end)
    await stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(
            event_type_id=ALICE_30,
            start=window.start,
            end=window.end,
            reason="booking_created",
        )
    )
    after = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert int(AT_14.timestamp()) not in [s for _, day in answer_starts(after) for s in day]
    assert memo.hits == 0

    await stub.GetSlots(request(ALICE_30, *TUESDAY))  # kept again
    sandbox.calendar.book(ALICE_30, AT_14 + timedelta(hours=1))  # nobody reports it
    fresh = await stub.GetSlots(request(ALICE_30, *TUESDAY, consistency=pb.CONSISTENCY_FRESH))
    assert fresh.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    cached = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert answer_starts(cached) == answer_starts(fresh) == truth(sandbox, ALICE_30, start, end)


async def test_expiry_and_started_slots_end_an_entry(
    stub: Stub, service: RunningService, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    memo = memo_of(service)
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    await stub.GetSlots(request(ALICE_30, *TUESDAY))
    clock.advance(3600)  # past every TTL
    later = await stub.GetSlots(request(ALICE_30, *TUESDAY))
    assert later.freshness.source == pb.Freshness.SOURCE_UPSTREAM
    assert memo.hits == 0

    lo = datetime.fromtimestamp(clock(), UTC)
    hi = lo + timedelta(days=1)
    await stub.GetSlots(request(ALICE_30, lo, hi))
    first = await stub.GetSlots(request(ALICE_30, lo, hi))
    starts = [s for _, day in answer_starts(first) for s in day]
    assert starts
    clock.set(starts[0] + 1)  # the first slot has started: it must not be offered
    moved = await stub.GetSlots(request(ALICE_30, lo, hi))
    assert starts[0] not in [s for _, day in answer_starts(moved) for s in day]


async def test_bad_bytes_are_still_invalid_argument(channel: grpc.aio.Channel) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/availability.v1.AvailabilityService/GetSlots"
    )
    for _ in range(2):  # the second time too: bad bytes are never kept
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call(b"\xff\xff\xff")
        assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT


class TestWithTokens:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"api_tokens": SecretStr("t0ken-of-a-reader:reader")})

    async def test_a_fast_lane_hit_still_needs_a_token(
        self, stub: Stub, service: RunningService
    ) -> None:
        memo = memo_of(service)
        good = (("authorization", "Bearer t0ken-of-a-reader"),)
        for _ in range(3):
            await stub.GetSlots(request(ALICE_30, *TUESDAY), metadata=good)
        assert memo.hits == 1
        for metadata in [(), (("authorization", "Bearer wrong"),)]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetSlots(request(ALICE_30, *TUESDAY), metadata=metadata)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert memo.hits == 1


async def test_on_redis_an_entry_lasts_only_its_versions_trust_window(
    clock: ManualClock,
) -> None:
    upstream = FakeUpstream()
    start = int(clock()) + 86_400
    upstream.add(ALICE_30, start + 3600)
    monotonic = ManualClock(50.0)
    query = SlotsQuery(ALICE_30, start, start + 86_400)
    raw = b"request bytes"
    for trust, kept in [(0.05, True), (0.0, False)]:
        store = TieredStore(
            RedisStore.from_url(flushed_url(REDIS_DB)),
            clock=clock,
            trust=trust,
            monotonic=monotonic,
        )
        cache = SlotCache(upstream, store, clock=clock)
        memo = HitMemo(10, clock=clock, monotonic=monotonic)
        try:
            await cache.get_slots(query)
            await cache.idle()  # the hosts' look-up and stamping behind the cold answer
            began = monotonic()
            answer = await cache.get_slots(query)
            assert answer.freshness.source is Source.CACHE
            memo.keep(raw, answer, b"days", cache.generation, began, {})
            assert (memo.answer(raw, cache.generation) is not None) is kept
            if kept:
                monotonic.advance(0.049)
                assert memo.answer(raw, cache.generation) is not None
                monotonic.advance(0.001)  # the window closed: ask the core (and Redis)
                assert memo.answer(raw, cache.generation) is None
        finally:
            await cache.close()
            await store.close()
    flushed_url(REDIS_DB)
