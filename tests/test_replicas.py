"""Several real server processes on one Redis: the fleet behaves like one cache.

Each test starts three ``availability serve`` processes (see
:mod:`tests.helpers.replicas`) against one Redis and one sandbox Cal.com running in
this process on the system clock (the servers read the real clock, so the
sandbox must too). Ranges start at the next UTC midnight, so no slot starts
while a test runs and answers can be compared with the calendar exactly.

Redis is real: the machine's Redis on databases of these tests' own
(emptied before and after), or a private ``redis-server`` where a test stops
it. Every wait is bounded: RPC deadlines, and polls with a deadline where the
thing waited for happens in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from availability.sandbox import RunningSandbox, serve_sandbox
from availability.v1 import availability_pb2 as pb
from tests.helpers.redis_db import flushed_url
from tests.helpers.replicas import Partition, RedisServer, Replica, running_replicas
from tests.test_server import answer_starts, request, truth, ts

ALICE_30, ALICE_60, DANA_30 = 1001, 1002, 1007
EVENT_TYPES = range(1001, 1008)  # the sandbox's default calendar
SHARED_DB, CONCURRENT_DB, BUDGET_DB = 12, 13, 14
CACHE = pb.Freshness.SOURCE_CACHE
UPSTREAM = pb.Freshness.SOURCE_UPSTREAM
RPC_DEADLINE = 10.0
OUTAGE_DEADLINE = 2.0
"""What a caller waits at most while Redis is down."""

pytestmark = pytest.mark.timeout(60)


def midnight(days_ahead: int) -> datetime:
    """00:00 UTC ``days_ahead`` days from today: a range start no slot has passed yet."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days_ahead)


def days(first: int, count: int) -> tuple[datetime, datetime]:
    return midnight(first), midnight(first + count)


WEEK = (1, 7)
"""Tomorrow and the six days after: always five of alice's working days."""


def warnings(replicas: list[Replica]) -> str:
    """What the replicas logged at WARNING and above: the first thing to read on a failure."""
    return "".join(
        f"{r.name}: {line}"
        for r in replicas
        for line in r.log.lines
        if " WARNING " in line or " ERROR " in line
    )


def starts(response: pb.GetSlotsResponse) -> set[int]:
    return {s for _, day in answer_starts(response) for s in day}


async def get(
    replica: Replica, event_type_id: int, span: tuple[int, int], deadline: float = RPC_DEADLINE
) -> pb.GetSlotsResponse:
    return await replica.stub.GetSlots(request(event_type_id, *days(*span)), timeout=deadline)


async def invalidate(
    replica: Replica, event_type_id: int, start: int, end: int, deadline: float = RPC_DEADLINE
) -> None:
    await replica.stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(
            event_type_id=event_type_id,
            start=ts(datetime.fromtimestamp(start, UTC)),
            end=ts(datetime.fromtimestamp(end, UTC)),
            reason="booking_created",
        ),
        timeout=deadline,
    )


def book_one(sandbox: RunningSandbox, answer: pb.GetSlotsResponse, nth: int = -1) -> int:
    """Book the ``nth`` offered slot of ``answer`` in the sandbox; its start."""
    taken = sorted(starts(answer))[nth]
    sandbox.calendar.book(ALICE_30, taken)
    return taken


async def poll(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.1
) -> None:
    """Re-check ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(every)


@pytest.fixture
async def live_sandbox() -> AsyncIterator[RunningSandbox]:
    """The sandbox on the system clock, unthrottled: only the servers' own budget limits."""
    async with serve_sandbox(latency=(0.0, 0.0), rate_limit_per_minute=None) as sandbox:
        yield sandbox


@pytest.fixture
def shared_db() -> Iterator[str]:
    yield flushed_url(SHARED_DB)
    flushed_url(SHARED_DB)


@pytest.fixture
def concurrent_db() -> Iterator[str]:
    yield flushed_url(CONCURRENT_DB)
    flushed_url(CONCURRENT_DB)


@pytest.fixture
def budget_db() -> Iterator[str]:
    yield flushed_url(BUDGET_DB)
    flushed_url(BUDGET_DB)


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    async with RedisServer() as server:
        yield server


@pytest.fixture
async def partition(private_redis: RedisServer) -> AsyncIterator[Partition]:
    """The private Redis behind a link the test can cut."""
    async with Partition(private_redis.port) as link:
        yield link


# -- 1. sharing and invalidation ------------------------------------------------


async def test_a_read_on_one_replica_is_a_hit_on_another_and_invalidation_reaches_all(
    live_sandbox: RunningSandbox, shared_db: str
) -> None:
    async with running_replicas(3, cache_url=shared_db, calcom_url=live_sandbox.url) as (a, b, c):
        first = await get(a, ALICE_30, WEEK)
        assert first.freshness.source == UPSTREAM
        assert answer_starts(first) == truth(live_sandbox, ALICE_30, *days(*WEEK))
        assert live_sandbox.requests.calls("/v2/slots") == 1
        # A learns the hosts behind its first answer; a second read there waits for that
        # (or hits), and then the bucket is in Redis under its full stamp.
        await get(a, ALICE_30, WEEK)

        second = await get(b, ALICE_30, WEEK)
        assert second.freshness.source == CACHE
        assert second.days == first.days
        assert live_sandbox.requests.calls("/v2/slots") == 1

        taken = book_one(live_sandbox, first)
        await invalidate(c, ALICE_30, taken, taken + 1800)
        on_a = await get(a, ALICE_30, WEEK)
        on_b = await get(b, ALICE_30, WEEK)
        for after in (on_a, on_b):
            assert taken not in starts(after)
            assert answer_starts(after) == truth(live_sandbox, ALICE_30, *days(*WEEK))
        # A refetched the booked day (one call); B found A's new bucket in Redis.
        assert live_sandbox.requests.calls("/v2/slots") == 2
        assert on_b.freshness.source == CACHE


async def test_a_refresh_after_invalidation_is_one_call_for_the_fleet(
    live_sandbox: RunningSandbox, shared_db: str
) -> None:
    """Replicas holding an outdated local copy still wait for the one fetcher's bucket."""
    async with running_replicas(3, cache_url=shared_db, calcom_url=live_sandbox.url) as replicas:
        for replica in replicas:
            await get(replica, ALICE_30, WEEK)  # every replica now holds every day locally
        assert live_sandbox.requests.calls("/v2/slots") == 1
        taken = book_one(live_sandbox, await get(replicas[0], ALICE_30, WEEK))
        await invalidate(replicas[2], ALICE_30, taken, taken + 1800)

        with live_sandbox.hold() as hold:
            reads = [asyncio.ensure_future(get(r, ALICE_30, WEEK)) for r in replicas * 10]
            await asyncio.wait_for(hold.arrived(1), RPC_DEADLINE)
        answers = await asyncio.gather(*reads)
        assert all(taken not in starts(answer) for answer in answers)
        assert live_sandbox.requests.calls("/v2/slots") == 2


# -- 2. single-flight across replicas --------------------------------------------


async def test_two_hundred_concurrent_cold_reads_over_three_replicas_cost_one_call(
    concurrent_db: str,
) -> None:
    # Every Cal.com answer takes half a second, like the real one: the fetch stays in
    # flight while the other replicas find its lease and wait for its bucket.
    async with (
        serve_sandbox(latency=(0.5, 0.5), rate_limit_per_minute=None) as sandbox,
        running_replicas(3, cache_url=concurrent_db, calcom_url=sandbox.url) as replicas,
    ):
        # Every read needs the hosts first: while the one look-up is parked, no replica
        # can have read a bucket, so all 200 reads are in flight before any exists.
        with sandbox.hold(path="/v2/event-types") as lookup:
            reads = [
                asyncio.ensure_future(get(replicas[i % 3], ALICE_30, WEEK)) for i in range(200)
            ]
            await asyncio.wait_for(lookup.arrived(1), RPC_DEADLINE)
        answers = await asyncio.gather(*reads)

    assert sandbox.requests.calls("/v2/slots") == 1, warnings(replicas)
    assert all(answer.days == answers[0].days for answer in answers)
    assert answer_starts(answers[0]) == truth(sandbox, ALICE_30, *days(*WEEK))
    # Each replica answered reads that waited on that one fetch (later ones are hits).
    for i, replica in enumerate(replicas):
        assert UPSTREAM in {a.freshness.source for a in answers[i::3]}, replica.name


# -- 3. Redis outage ----------------------------------------------------------------


async def _read_within(replica: Replica, event_type_id: int, span: tuple[int, int]) -> set[int]:
    """A read that must succeed within the outage deadline; its slot starts."""
    began = time.monotonic()
    answer = await get(replica, event_type_id, span, deadline=OUTAGE_DEADLINE)
    assert time.monotonic() - began < OUTAGE_DEADLINE
    assert answer.days, f"{replica.name}: {event_type_id} {span}"
    return starts(answer)


def _degraded(replica: Replica) -> bool:
    """Whether the replica's last word about Redis was that it cannot reach it."""
    for line in reversed(replica.log.lines):
        if "Redis reachable again" in line:
            return False
        if "Redis unreachable" in line:
            return True
    return False


async def _until_reconnected(replicas: list[Replica], timeout: float = 10.0) -> None:
    """Poke every degraded replica with reads until it says Redis answers again."""

    async def all_back() -> bool:
        for replica in filter(_degraded, replicas):
            await _read_within(replica, ALICE_30, WEEK)
        return not any(map(_degraded, replicas))

    await poll(all_back, timeout, "every replica reconnects to Redis")


async def _book_and_report(
    live_sandbox: RunningSandbox, week: pb.GetSlotsResponse, replica: Replica
) -> int:
    """Book the week's last slot and report it on ``replica``, waiting out an outage."""
    taken = book_one(live_sandbox, week, -1)
    await invalidate(replica, ALICE_30, taken, taken + 1800, deadline=OUTAGE_DEADLINE)
    return taken


async def _warm(replicas: list[Replica]) -> pb.GetSlotsResponse:
    """Alice's week read on every replica (fetched on the first, shared after)."""
    week = await get(replicas[0], ALICE_30, WEEK)
    for replica in replicas[1:]:
        await get(replica, ALICE_30, WEEK)
    return week


async def _all_drop(
    live_sandbox: RunningSandbox, replicas: tuple[Replica, ...], taken: int
) -> None:
    """Each replica answers without ``taken``, exactly as the calendar now stands."""
    for replica in replicas:
        after = await get(replica, ALICE_30, WEEK)
        assert taken not in starts(after), replica.name
        assert answer_starts(after) == truth(live_sandbox, ALICE_30, *days(*WEEK))


async def test_replicas_ride_out_a_redis_restart_and_share_again_afterwards(
    live_sandbox: RunningSandbox, private_redis: RedisServer
) -> None:
    async with running_replicas(
        3, cache_url=private_redis.url(), calcom_url=live_sandbox.url
    ) as replicas:
        a, b, c = replicas
        week = await get(a, ALICE_30, WEEK)
        await get(a, ALICE_30, WEEK)  # after the hosts' look-up that follows a cold answer
        for replica in (b, c):
            assert (await get(replica, ALICE_30, WEEK)).freshness.source == CACHE

        await private_redis.stop()
        for replica in replicas:
            assert await _read_within(replica, ALICE_30, WEEK) == starts(week)  # cached
            await _read_within(replica, ALICE_30, (8, 3))  # a new range
            await _read_within(replica, DANA_30, WEEK)  # a new event type (hosts unknown)
        assert all(r.process.returncode is None for r in replicas)

        # An invalidation while Redis is down: honoured at once where it was made...
        cut_off = await _book_and_report(live_sandbox, week, c)
        assert cut_off not in await _read_within(c, ALICE_30, WEEK)

        await private_redis.start()  # same port, empty
        await _until_reconnected(replicas)
        # ...and by every replica once Redis is back.
        for replica in (a, b):
            assert cut_off not in await _read_within(replica, ALICE_30, WEEK), replica.name

        # Sharing works again: a read on A is a hit on B. (A's cold read may cost two
        # calls: its hosts' versions were seeded by the reads just above, less than the
        # skew margin before it, which it cannot tell from an invalidation.)
        assert (await get(a, ALICE_60, (11, 2))).freshness.source == UPSTREAM
        await get(a, ALICE_60, (11, 2))  # waits for the hosts' look-up behind the first
        calls = live_sandbox.requests.calls("/v2/slots")
        assert (await get(b, ALICE_60, (11, 2))).freshness.source == CACHE
        assert live_sandbox.requests.calls("/v2/slots") == calls

        # So does invalidation across replicas.
        taken = book_one(live_sandbox, await get(a, ALICE_30, WEEK), 0)
        await invalidate(c, ALICE_30, taken, taken + 1800)
        await _all_drop(live_sandbox, (a, b), taken)


async def test_reads_keep_their_deadline_while_redis_hangs(
    live_sandbox: RunningSandbox, private_redis: RedisServer
) -> None:
    """SIGSTOP: connections open, nothing answered; each Redis call costs its socket timeout."""
    async with running_replicas(
        3, cache_url=private_redis.url(), calcom_url=live_sandbox.url
    ) as replicas:
        a, b, c = replicas
        week = await _warm(replicas)

        with private_redis.frozen():
            for replica in replicas:
                assert await _read_within(replica, ALICE_30, WEEK) == starts(week)
                await _read_within(replica, ALICE_30, (8, 3))
                await _read_within(replica, DANA_30, WEEK)
            cut_off = await _book_and_report(live_sandbox, week, c)
            assert cut_off not in await _read_within(c, ALICE_30, WEEK)

        await _until_reconnected(replicas)
        await _all_drop(live_sandbox, (a, b), cut_off)


async def test_an_invalidation_taken_during_a_partition_is_replayed_to_the_fleet(
    live_sandbox: RunningSandbox, partition: Partition
) -> None:
    """Redis survives the outage with the pre-booking buckets: only the replay removes them."""
    async with running_replicas(
        3, cache_url=partition.url(), calcom_url=live_sandbox.url
    ) as replicas:
        a, b, c = replicas
        week = await _warm(replicas)

        partition.cut()
        cut_off = await _book_and_report(live_sandbox, week, c)
        assert cut_off not in await _read_within(c, ALICE_30, WEEK)
        await _read_within(a, ALICE_30, WEEK)  # A notices the outage too; B stays idle
        partition.heal()

        await _until_reconnected(replicas)  # C and A; B never noticed
        replayed = [line for line in c.log.lines if "Redis reachable again" in line]
        assert "replayed 0 " not in replayed[-1]

        # A replayed bump was never waited out (the invalidation returned while Redis was
        # unreachable): a replica that confirmed its versions just before the replay may
        # trust them for AVAILABILITY_LOCAL_TRUST (0.05 s) more. Within a second, all drop.
        async def dropped() -> bool:
            for replica in (a, b):
                if cut_off in starts(await get(replica, ALICE_30, WEEK)):
                    return False
            return True

        await poll(dropped, 1.0, "A and B drop the replayed booking within the trust window")
        await _all_drop(live_sandbox, (a, b), cut_off)


async def test_an_idle_replica_replays_its_invalidations_once_redis_answers(
    live_sandbox: RunningSandbox, partition: Partition
) -> None:
    """The replica that took an invalidation while cut off may get no more calls."""
    async with running_replicas(
        3, cache_url=partition.url(), calcom_url=live_sandbox.url
    ) as replicas:
        _, b, c = replicas
        week = await _warm(replicas)
        partition.cut()
        cut_off = await _book_and_report(live_sandbox, week, c)
        partition.heal()

        # C gets no more calls: only C can tell Redis about the booking, on its own.
        async def b_honours_it() -> bool:
            return cut_off not in starts(await get(b, ALICE_30, WEEK))

        await poll(b_honours_it, 5.0, "B drops the slot C invalidated during the outage")


async def test_an_idle_replica_sees_an_invalidation_made_after_a_redis_restart(
    live_sandbox: RunningSandbox, private_redis: RedisServer
) -> None:
    """Its pooled connections died with Redis: the first call must not declare Redis
    down, or the replica would serve its local copies, blind to the invalidation."""
    async with running_replicas(
        3, cache_url=private_redis.url(), calcom_url=live_sandbox.url
    ) as replicas:
        _, b, c = replicas
        week = await _warm(replicas)
        await private_redis.stop()
        await private_redis.start()  # B sees nothing of this: it gets no calls meanwhile
        await _until_reconnected([c])

        taken = book_one(live_sandbox, week, -1)
        await invalidate(c, ALICE_30, taken, taken + 1800)  # OK: Redis has it
        assert taken not in starts(await get(b, ALICE_30, WEEK))


# -- 4. the shared Cal.com budget ------------------------------------------------------


async def _timed_read(
    replica: Replica, event_type_id: int, span: tuple[int, int]
) -> tuple[float, pb.GetSlotsResponse | grpc.aio.AioRpcError]:
    began = time.monotonic()
    try:
        outcome: pb.GetSlotsResponse | grpc.aio.AioRpcError = await get(
            replica, event_type_id, span
        )
    except grpc.aio.AioRpcError as error:
        outcome = error
    return time.monotonic() - began, outcome


async def test_three_replicas_share_one_budget_and_refuse_fast_past_it(budget_db: str) -> None:
    limit = 15
    async with (
        serve_sandbox(latency=(0.05, 0.15), rate_limit_per_minute=None) as sandbox,
        running_replicas(
            3,
            cache_url=budget_db,
            calcom_url=sandbox.url,
            env={"AVAILABILITY_CALCOM_RATE_LIMIT": str(limit)},
        ) as replicas,
    ):
        # Learn the hosts first (one look-up per event type, shared through Redis), so
        # the rest of the budget goes to slots; the cold-fleet case is tested below.
        for event_type_id in EVENT_TYPES:
            await replicas[0].stub.InvalidateSlots(
                pb.InvalidateSlotsRequest(event_type_id=event_type_id), timeout=RPC_DEADLINE
            )
        lookups = len(sandbox.requests)
        assert lookups == len(EVENT_TYPES)

        # 7 event types x 7 days: 49 distinct cold buckets, more than 3x the budget,
        # all at once and spread over the replicas...
        wanted = [(et, (day, 1)) for et in EVENT_TYPES for day in range(1, 8)]
        assert len(wanted) >= 3 * limit
        results = await asyncio.gather(
            *(_timed_read(replicas[i % 3], *w) for i, w in enumerate(wanted))
        )
        # ...then later callers, one at a time, once the budget is known to be spent.
        for i, day in enumerate(range(8, 12)):
            results.append(await _timed_read(replicas[i % 3], ALICE_30, (day, 1)))

        upstream = list(sandbox.requests)
        assert len(upstream) <= limit
        assert len(upstream) == limit  # demand exceeds it: the whole budget is used
        assert max(r.at for r in upstream) - min(r.at for r in upstream) < 60

        answered = [o for _, o in results if isinstance(o, pb.GetSlotsResponse)]
        refused = [(t, o) for t, o in results if isinstance(o, grpc.aio.AioRpcError)]
        assert len(answered) == limit - lookups  # one distinct bucket per call
        assert {o.code() for _, o in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all("budget" in (o.details() or "") for _, o in refused)
        slowest = max(t for t, _ in refused)
        assert slowest < 1.0, f"a refusal took {slowest:.2f} s"


async def test_a_cold_fleet_looks_each_event_type_up_once(
    live_sandbox: RunningSandbox, budget_db: str
) -> None:
    """Host look-ups cost budget like slots; N replicas must not pay them N times."""
    async with running_replicas(3, cache_url=budget_db, calcom_url=live_sandbox.url) as replicas:
        with live_sandbox.hold(path="/v2/event-types") as hold:
            reads = [asyncio.ensure_future(get(r, ALICE_30, WEEK)) for r in replicas]
            await asyncio.wait_for(hold.arrived(1), RPC_DEADLINE)
            # A second look-up must not arrive while the first is parked: give it a
            # bounded chance to (absence can only be observed for a while).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hold.arrived(2), 1.0)
        answers = await asyncio.gather(*reads)
        assert live_sandbox.requests.calls(f"/v2/event-types/{ALICE_30}") == 1
        assert all(answer.days == answers[0].days for answer in answers)
