"""The busy hour: who calls, who books, and when Cal.com fails.

Everything runs in this process on free loopback ports: the sandbox Cal.com
(Cal.com-like latency, its own 120 calls/min throttle, an API key so that
invalidation can learn hosts) and the whole service in front of it, with its
TTLs scaled to the compressed hour. The actors:

* **agents**: a few telephony callers (:class:`~availability_client.AsyncAgentClient`)
  asking for the next 1, 3 or 7 days of Zipf-popular event types, in several
  time zones, thinking about 0.1 s between calls;
* **the booking service** (:class:`~availability_client.AsyncBookingClient`): now and
  then books a slot an agent was offered, after ``is_free`` (a fresh read),
  and reports it with ``booking_created``;
* **Cal.com's own booking page**: one booking the service learns of only
  through a signed ``BOOKING_CREATED`` webhook;
* **a booking nobody reports**: only the TTL finds it (measured staleness);
* **a Cal.com outage**: ``/v2/slots`` answers 503 for a while (stale answers).

The demo keeps its own truth beside the service's metrics: the calls it made,
and every answer checked against the bookings made so far ("taken slots
offered"), so the metrics can be checked against what really happened.
The clients' channels do not retry, so every call the server counts is one the
demo made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
import httpx
from pydantic import SecretStr

from availability.adapters.calcom.webhooks import SIGNATURE_HEADER, signature
from availability.config import Settings
from availability.demo.figures import Snapshot
from availability.sandbox import RunningSandbox, SandboxError, serve_sandbox
from availability.server import RunningService, open_service
from availability.transport.http.app import METRICS_PATH, WEBHOOK_PATH
from availability_client import (
    AsyncAgentClient,
    AsyncBookingClient,
    Availability,
    AvailabilityError,
)
from availability_client import Slot as OfferedSlot

__all__ = ["SCRAPE_EVERY", "Event", "Outcome", "Timeline", "Truth", "play"]

EVENT_TYPES = (1001, 1005, 1002, 1003, 1004, 1007)
"""Most asked first (Zipf). 1004 is seated: it is asked about, never booked here."""
REPORTED = (1003, 1007)
"""What the booking service and Cal.com's page book: chandra's and dana's calendars. The
booking nobody reports is alice's (1001, 1002 and 1005 all show it): were her days also
invalidated by reported bookings, their refetch would wash the unreported one out before
a TTL refresh could measure it (measured staleness sees only what refreshes find)."""
ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata")
RANGES = ((1, 6), (3, 3), (7, 1))
"""(days ahead, weight): most callers want today and tomorrow."""
THINK = 0.1
"""Mean seconds an agent waits between calls."""
AGENT_DEADLINE = 2.0
API_KEY = "demo-cal-api-key"
SCRAPE_EVERY = 1.0


@dataclass(frozen=True)
class Timeline:
    """When things happen, as fractions of the run (so a short run tells the same story)."""

    seconds: float
    bookings_from: float = 0.10
    booking_every: float = 0.14
    webhook_at: float = 0.32
    unreported_at: float = 0.18
    outage: tuple[float, float] = (0.60, 0.72)

    def at(self, fraction: float) -> float:
        return self.seconds * fraction

    @property
    def outage_window(self) -> tuple[float, float]:
        return self.at(self.outage[0]), self.at(self.outage[1])

    def settings(self, sandbox_url: str, secret: str) -> Settings:
        """The service's settings: defaults, but TTLs scaled to the compressed hour and
        quiet logs (the dashboard is the display). The near-day TTL is 40 % of the run:
        near buckets are refreshed a couple of times, the booking nobody reports (at 18 %)
        is due to be found before the outage (at 60 %), and the Cal.com budget (120 calls
        a minute, as in production) holds."""
        near = max(1.0, self.seconds * 0.4)
        return Settings(
            grpc_addr="127.0.0.1:0",
            http_addr="127.0.0.1:0",
            calcom_url=sandbox_url,
            calcom_api_key=SecretStr(API_KEY),
            webhook_secret=SecretStr(secret),
            ttl_near=near,
            ttl_far=near * 3,
            ttl_empty=near / 2,
            max_stale=self.seconds,
            log_level="ERROR",
            shutdown_grace=1,
            shutdown_drain=0,
        )


@dataclass(frozen=True)
class Event:
    at: float
    """Seconds since the start."""
    kind: str
    """``booking`` (reported by the booking service), ``webhook``, ``unreported``,
    ``outage`` or ``recovered``."""
    text: str


@dataclass
class Truth:
    """What the demo itself saw: the ground truth the metrics are checked against."""

    started: float = field(default_factory=time.monotonic)
    calls: int = 0
    """GetSlots calls made (agents and ``is_free``)."""
    failures: dict[str, int] = field(default_factory=dict)
    answers: int = 0
    taken_offered: int = 0
    """Answers that offered a slot already booked (on Cal.com) when they arrived."""
    taken: list[tuple[frozenset[int], float, float]] = field(default_factory=list)
    """Every booking made: its hosts and [start, end)."""
    latest: dict[int, Availability] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def happened(self, kind: str, text: str) -> None:
        self.events.append(Event(self.now(), kind, text))


@dataclass
class Outcome:
    """The run: every scrape, the demo's truth, and the checks of one against the other."""

    timeline: Timeline
    snapshots: list[Snapshot]
    truth: Truth
    sandbox_slot_requests: int
    checks: list[tuple[str, bool]]

    @property
    def final(self) -> Snapshot:
        return self.snapshots[-1]


async def play(
    timeline: Timeline,
    *,
    callers: int = 4,
    seed: int | None = None,
    on_scrape: Callable[[Snapshot, Truth], None] = lambda snapshot, truth: None,
) -> Outcome:
    """Run the busy hour; ``on_scrape`` sees every scrape of ``/metrics`` as it arrives."""
    rng = random.Random(seed)
    secret = secrets.token_hex(16)
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            serve_sandbox(latency=(0.3, 0.8), api_key=API_KEY, seed=seed)
        )
        service = await stack.enter_async_context(
            open_service(timeline.settings(sandbox.url, secret))
        )
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=service.http_url))
        agent = await stack.enter_async_context(_client(AsyncAgentClient, service))
        booking = await stack.enter_async_context(_client(AsyncBookingClient, service))
        truth = Truth()
        snapshots = [await _scrape(http, truth)]
        stop = asyncio.Event()
        cast = _Cast(rng, sandbox, service, http, agent, booking, secret, truth, stop)
        actors = [
            *(cast.agent() for _ in range(callers)),
            cast.booking_service(timeline),
            cast.at(timeline.at(timeline.webhook_at), cast.webhook_booking),
            cast.at(timeline.at(timeline.unreported_at), cast.unreported_booking),
            cast.outage(*timeline.outage_window),
        ]
        async with asyncio.TaskGroup() as group:
            for actor in actors:
                group.create_task(actor)
            while truth.now() < timeline.seconds:
                await asyncio.sleep(min(SCRAPE_EVERY, max(0.0, timeline.seconds - truth.now())))
                snapshots.append(await _scrape(http, truth))
                on_scrape(snapshots[-1], truth)
            stop.set()
        sandbox.clear_faults()
        # Background fetches (a window, a refresh ahead, a look-up behind a cold answer)
        # may still be in the air: the sandbox counts a request before /metrics does.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.cache.idle(), 10.0)
        snapshots.append(await _settled(http, truth))
        on_scrape(snapshots[-1], truth)
        slot_requests = sandbox.requests.calls("/v2/slots")
    final = snapshots[-1]
    checks = [
        (
            f"GetSlots calls counted by /metrics ({final.total_calls:.0f}) = calls the demo "
            f"made ({truth.calls})",
            final.total_calls == truth.calls,
        ),
        (
            f"Cal.com /v2/slots requests counted by /metrics "
            f"({final.upstream_slots:.0f}) = requests the sandbox received ({slot_requests})",
            final.upstream_slots == slot_requests,
        ),
    ]
    return Outcome(timeline, snapshots, truth, slot_requests, checks)


C = TypeVar("C", AsyncAgentClient, AsyncBookingClient)


@contextlib.asynccontextmanager
async def _client(kind: type[C], service: RunningService) -> AsyncIterator[C]:
    # A plain channel: no retries, so the server's count equals the demo's.
    async with grpc.aio.insecure_channel(service.target) as channel:
        yield kind.from_channel(channel)


async def _scrape(http: httpx.AsyncClient, truth: Truth) -> Snapshot:
    response = await http.get(METRICS_PATH)
    response.raise_for_status()
    return Snapshot.parse(response.text, truth.now())


async def _settled(http: httpx.AsyncClient, truth: Truth) -> Snapshot:
    """The last scrape, once the server has finished every call the demo made (a call
    whose deadline passed may still be unwinding on the server)."""
    deadline = time.monotonic() + 5.0
    while True:
        snapshot = await _scrape(http, truth)
        if snapshot.total_calls >= truth.calls or time.monotonic() > deadline:
            return snapshot
        await asyncio.sleep(0.05)


class _Cast:
    """The actors, sharing the clients, the sandbox and the demo's truth."""

    def __init__(
        self,
        rng: random.Random,
        sandbox: RunningSandbox,
        service: RunningService,
        http: httpx.AsyncClient,
        agent: AsyncAgentClient,
        booking: AsyncBookingClient,
        secret: str,
        truth: Truth,
        stop: asyncio.Event,
    ) -> None:
        self.rng = rng
        self.sandbox = sandbox
        self.service = service
        self.http = http
        self.agent_client = agent
        self.booking_client = booking
        self.secret = secret
        self.truth = truth
        self.stop = stop

    async def at(self, moment: float, action: Callable[[], Awaitable[None]]) -> None:
        if await self._sleep(moment - self.truth.now()):
            await action()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or wake when the run stops; whether the run goes on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return not self.stop.is_set()

    # -- the agents ------------------------------------------------------------------

    async def agent(self) -> None:
        rng = self.rng
        weights = [1 / rank for rank in range(1, len(EVENT_TYPES) + 1)]
        while not self.stop.is_set():
            event_type = rng.choices(EVENT_TYPES, weights)[0]
            days = rng.choices([d for d, _ in RANGES], [w for _, w in RANGES])[0]
            now = datetime.now(UTC)
            self.truth.calls += 1
            try:
                answer = await self.agent_client.get_slots(
                    event_type,
                    now,
                    now + timedelta(days=days),
                    time_zone=rng.choice(ZONES),
                    timeout=AGENT_DEADLINE,
                )
            except AvailabilityError as exc:
                name = type(exc).__name__
                self.truth.failures[name] = self.truth.failures.get(name, 0) + 1
            else:
                self._check(event_type, answer)
            await self._sleep(rng.expovariate(1 / THINK))

    def _check(self, event_type: int, answer: Availability) -> None:
        """Count the answer, and whether it offered a slot that is already booked."""
        truth = self.truth
        truth.answers += 1
        truth.latest[event_type] = answer
        hosts = set(self.sandbox.calendar.event_type(event_type).host_ids)
        taken = [(lo, hi) for who, lo, hi in truth.taken if who & hosts]
        if not taken:
            return
        for slot in answer.slots():
            start = slot.start.timestamp()
            end = start + 1 if slot.end is None else slot.end.timestamp()
            if any(lo < end and start < hi for lo, hi in taken):
                truth.taken_offered += 1
                return

    # -- bookings ----------------------------------------------------------------------

    def _offered(self, event_type: int) -> OfferedSlot | None:
        """A slot an agent was offered lately (one of the first few, as callers pick)."""
        answer = self.truth.latest.get(event_type)
        slots = [] if answer is None else list(answer.slots())[:5]
        later = [s for s in slots if s.start > datetime.now(UTC) + timedelta(minutes=5)]
        return self.rng.choice(later) if later else None

    def _book(self, event_type: int, slot: OfferedSlot) -> tuple[float, float] | None:
        """Book ``slot`` on "Cal.com" (the sandbox); None if it is gone already."""
        try:
            made = self.sandbox.calendar.book(event_type, slot.start)
        except SandboxError:
            return None
        hosts = frozenset(self.sandbox.calendar.event_type(event_type).host_ids)
        self.truth.taken.append((hosts, made.start, made.end))
        return made.start, made.end

    async def booking_service(self, timeline: Timeline) -> None:
        """Books an offered slot every so often: checks it first, reports it after."""
        if not await self._sleep(timeline.at(timeline.bookings_from)):
            return
        while not self.stop.is_set():
            event_type = self.rng.choice(REPORTED)
            slot = self._offered(event_type)
            if slot is not None and slot.end is not None:
                await self._book_and_report(event_type, slot)
            if not await self._sleep(timeline.at(timeline.booking_every)):
                return

    async def _book_and_report(self, event_type: int, slot: OfferedSlot) -> None:
        assert slot.end is not None
        self.truth.calls += 1  # is_free is a (fresh) GetSlots
        try:
            free = await self.booking_client.is_free(event_type, slot.start, slot.end)
        except AvailabilityError as exc:
            name = type(exc).__name__
            self.truth.failures[name] = self.truth.failures.get(name, 0) + 1
            return
        if not free:
            self.truth.happened("booking", f"{event_type}: offered slot already gone")
            return
        if self._book(event_type, slot) is None:
            return
        try:
            await self.booking_client.booking_created(event_type, slot.start, slot.end)
        except AvailabilityError as exc:
            self.truth.happened("booking", f"{event_type} booked, report failed: {exc}")
            return
        self.truth.happened("booking", f"{event_type} {_when(slot)} booked and reported")

    async def webhook_booking(self) -> None:
        """Booked on Cal.com's own page: the service hears of it only by webhook."""
        for event_type in (*REPORTED, 1002):
            slot = self._offered(event_type)
            if slot is None:
                continue
            window = self._book(event_type, slot)
            if window is None:
                continue
            host = self.sandbox.calendar.event_type(event_type).host_ids[0]
            body = json.dumps(
                {
                    "triggerEvent": "BOOKING_CREATED",
                    "createdAt": datetime.now(UTC).isoformat(),
                    "payload": {
                        "uid": secrets.token_hex(8),
                        "eventTypeId": event_type,
                        "startTime": _iso(window[0]),
                        "endTime": _iso(window[1]),
                        "organizer": {"id": host},
                    },
                }
            ).encode()
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: signature(self.secret.encode(), body),
            }
            response = await self.http.post(WEBHOOK_PATH, content=body, headers=headers)
            self.truth.happened(
                "webhook",
                f"{event_type} {_when(slot)} booked on Cal.com's page: webhook "
                f"{response.status_code}",
            )
            return

    async def unreported_booking(self) -> None:
        """Booked, and nobody tells the service: only a TTL refresh can find it."""
        for event_type in (1001, 1002, 1005):
            slot = self._offered(event_type)
            if slot is not None and self._book(event_type, slot) is not None:
                self.truth.happened("unreported", f"{event_type} {_when(slot)} booked, unreported")
                return

    # -- Cal.com fails -------------------------------------------------------------------

    async def outage(self, begin: float, end: float) -> None:
        if not await self._sleep(begin - self.truth.now()):
            return
        self.sandbox.fail_next(503, count=1_000_000_000)
        self.truth.happened("outage", "Cal.com answers 503")
        await self._sleep(end - self.truth.now())
        self.sandbox.clear_faults()
        self.truth.happened("recovered", "Cal.com is back")


def _when(slot: OfferedSlot) -> str:
    return slot.start.astimezone(UTC).strftime("%a %H:%M UTC")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
