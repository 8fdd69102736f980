"""A circuit breaker over Cal.com: stop calling it while it fails, probe until it answers.

States (resilience4j's, Envoy's outlier detection for the figures):

- **closed**: calls pass. It *opens* after ``failures`` consecutive failures
  (default 5, Envoy's ``consecutive_5xx``) or when at least ``min_calls``
  calls of the last ``window`` seconds were made and ``failure_ratio`` of them
  failed (default 10 calls, 10 s, 75 %). resilience4j's defaults (a window
  of 100 calls, 60 s open) assume thousands of calls a second; Cal.com
  allows 2, so the window is about 20 calls and the open interval short.
  The ratio is 75 % rather than resilience4j's 50 % because retries make a
  half-failing Cal.com usable (a flaky Cal.com must not fail cold reads);
  the breaker is for a Cal.com that is down.
- **open**: calls fail at once with :class:`~availability.core.ports.CircuitOpen`
  (an ``UpstreamUnavailable``: the cache serves its stale buckets), without
  spending the Cal.com budget, for ``open_for`` seconds (default 1 s).
- **half-open**: after that interval one call goes through as a probe; the
  others still fail fast. One probe per interval: a probe that hangs does
  not keep the next interval's probe from going. The probe's success
  closes the breaker; its failure opens it again for twice as long, up to
  ``open_max`` (default 8 s; Envoy's growing ejection time). So a short blip
  costs one second and a long outage at most one Cal.com call per 8 s
  (6 % of Cal.com's rate limit), while recovery is noticed within 8 s.

What counts: a failure is an :class:`UpstreamUnavailable` Cal.com caused (5xx,
timeout, connection error, malformed body). 4xx and 429 mean Cal.com
answered (429 is the budget's business: it pauses the cluster until the
reset). :class:`BudgetExhausted` made no call and counts for nothing.

Per process by default. Given the cache store (``shared``, wired when Redis
is configured), the breaker is cluster-wide: opening writes the
``{prefix}:breaker`` record (its TTL outlives the longest open interval), every
replica reads it before a call and fails fast while it says open, a probe
succeeding writes "closed", and the probe itself takes the
``{prefix}:breaker:probe`` lease (``SET NX PX`` for one interval), so one
replica probes per interval for the whole cluster. A store that cannot be
read leaves each replica to its own breaker.

Sits inside the retries and outside the budget (see ``server.py``): retries
are attempts it counts, and an open breaker takes no unit of the budget.

For metrics (plain attributes, read-only by convention): ``state``
(:class:`BreakerState`), ``transitions`` (times each state was entered) and
``rejected`` (calls refused while open).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import TypeVar

from availability.core.clock import Clock
from availability.core.keys import KeySchema
from availability.core.leases import lease_token
from availability.core.ports import (
    BudgetExhausted,
    CacheStore,
    CircuitOpen,
    EventTypeInfo,
    Overloaded,
    Priority,
    Upstream,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from availability.core.slots import Slot

__all__ = ["BreakerState", "CircuitBreaker", "SharedBreakerState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _failed(error: UpstreamError | None) -> bool | None:
    """True: Cal.com failed; False: it answered; None: no call was made (no verdict)."""
    if error is None:
        return False
    if isinstance(error, BudgetExhausted | CircuitOpen | Overloaded):
        return None
    if isinstance(error, UpstreamThrottled):
        return False
    return isinstance(error, UpstreamUnavailable)


class SharedBreakerState:
    """The breaker as every replica sharing the cache store sees it."""

    def __init__(self, store: CacheStore, keys: KeySchema) -> None:
        self._store = store
        self._record_key = keys.breaker()
        self._probe_key = keys.breaker_probe()

    async def read(self) -> tuple[float, float] | bool | None:
        """``(open_until, open_for)`` while open, True once closed again, None: no word."""
        try:
            [record] = await self._store.read_records([self._record_key])
        except Exception:
            return None
        if not isinstance(record, dict):
            return None
        if record.get("closed") is True:
            return True
        try:
            return float(record["open_until"]), float(record["open_for"])
        except (KeyError, TypeError, ValueError):
            return None

    async def publish_open(self, open_until: float, open_for: float, ttl: float) -> None:
        with contextlib.suppress(Exception):
            await self._store.write_record(
                self._record_key, {"open_until": open_until, "open_for": open_for}, ttl
            )

    async def publish_closed(self, ttl: float) -> None:
        with contextlib.suppress(Exception):
            await self._store.write_record(self._record_key, {"closed": True}, ttl)

    async def take_probe(self, interval: float) -> bool:
        """Become the cluster's one probe for ``interval`` seconds (never released)."""
        try:
            [mine] = await self._store.lease([self._probe_key], lease_token(), interval)
        except Exception:
            return True  # no store: this replica decides alone
        return mine


class CircuitBreaker:
    """An :class:`~availability.core.ports.Upstream` that stops calling a failing one."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        clock: Clock,
        failures: int = 5,
        failure_ratio: float = 0.75,
        window: float = 10.0,
        min_calls: int = 10,
        open_for: float = 1.0,
        open_max: float = 8.0,
        shared: SharedBreakerState | None = None,
    ) -> None:
        if failures < 1 or min_calls < 1:
            raise ValueError("failures and min_calls must be at least 1")
        if not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if not 0 < open_for <= open_max:
            raise ValueError("open_for must be positive and at most open_max")
        self._upstream = upstream
        self._clock = clock
        self._failures = failures
        self._failure_ratio = failure_ratio
        self._window = window
        self._min_calls = min_calls
        self._open_base = open_for
        self._open_max = open_max
        self._shared = shared
        self._state = BreakerState.CLOSED
        self._open_for = open_for
        self._next_probe = 0.0
        self._consecutive = 0
        self._outcomes: deque[tuple[float, bool]] = deque()
        self.transitions: Counter[BreakerState] = Counter()
        self.rejected = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    async def fetch_slots(
        self,
        event_type_id: int,
        first_day: date,
        last_day: date,
        *,
        duration_minutes: int = 0,
        timeout: float | None = None,
        priority: Priority = Priority.INTERACTIVE,
    ) -> Mapping[date, Sequence[Slot]]:
        return await self._call(
            lambda: self._upstream.fetch_slots(
                event_type_id,
                first_day,
                last_day,
                duration_minutes=duration_minutes,
                timeout=timeout,
                priority=priority,
            )
        )

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        return await self._call(
            lambda: self._upstream.fetch_event_type(event_type_id, timeout=timeout)
        )

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        probe = await self._admit()
        try:
            result = await call()
        except UpstreamError as error:
            await self._record(probe, _failed(error))
            raise
        except BaseException:  # cancelled (or an adapter bug): no verdict on Cal.com
            if probe:
                self._next_probe = self._clock()
            raise
        await self._record(probe, False)
        return result

    # -- the state machine ----------------------------------------------------

    async def _admit(self) -> bool:
        """Let the call through (True: as the probe) or raise :class:`CircuitOpen`."""
        now = self._clock()
        if self._shared is not None:
            await self._follow_cluster(now)
        if self._state is BreakerState.CLOSED:
            return False
        if now < self._next_probe:
            raise self._refusal(now)
        if self._shared is not None and not await self._shared.take_probe(self._open_for):
            raise self._refusal(now)
        self._enter(BreakerState.HALF_OPEN)
        self._next_probe = now + self._open_for
        return True

    def _refusal(self, now: float) -> CircuitOpen:
        self.rejected += 1
        left = max(0.0, self._next_probe - now)
        if self._state is BreakerState.HALF_OPEN or left == 0:
            return CircuitOpen(
                "Cal.com has been failing; a probe call is testing it (circuit breaker half-open)"
            )
        return CircuitOpen(
            f"Cal.com has been failing; not calling it for {left:.1f} s (circuit breaker open)"
        )

    async def _record(self, probe: bool, failed: bool | None) -> None:
        now = self._clock()
        if probe:
            if failed is None:
                self._next_probe = now  # nothing was learned: the next call probes
            elif failed:
                await self._open(now, min(self._open_max, self._open_for * 2), "the probe failed")
            else:
                await self._close()
            return
        if self._state is not BreakerState.CLOSED or failed is None:
            return  # admitted before the breaker opened: the probe decides now
        self._outcomes.append((now, failed))
        while self._outcomes and self._outcomes[0][0] <= now - self._window:
            self._outcomes.popleft()
        self._consecutive = self._consecutive + 1 if failed else 0
        if self._consecutive >= self._failures:
            await self._open(now, self._open_base, f"{self._consecutive} consecutive failures")
            return
        calls = len(self._outcomes)
        failures = sum(1 for _, f in self._outcomes if f)
        if calls >= self._min_calls and failures >= self._failure_ratio * calls:
            await self._open(
                now, self._open_base, f"{failures} of {calls} calls in {self._window:g} s failed"
            )

    async def _open(self, now: float, open_for: float, why: str) -> None:
        self._open_for = open_for
        self._next_probe = now + open_for
        self._consecutive = 0
        self._outcomes.clear()
        if self._state is not BreakerState.OPEN:
            logger.warning(
                "Cal.com circuit breaker open (%s): failing fast for %g s", why, open_for
            )
        self._enter(BreakerState.OPEN)
        if self._shared is not None:
            await self._shared.publish_open(self._next_probe, open_for, self._record_ttl)

    async def _close(self) -> None:
        self._open_for = self._open_base
        if self._state is not BreakerState.CLOSED:
            logger.info("Cal.com circuit breaker closed: Cal.com answers again")
        self._enter(BreakerState.CLOSED)
        if self._shared is not None:
            await self._shared.publish_closed(self._record_ttl)

    async def _follow_cluster(self, now: float) -> None:
        """Adopt what another replica learned: it opened, reopened or closed the breaker."""
        assert self._shared is not None
        word = await self._shared.read()
        if word is True:
            if self._state is not BreakerState.CLOSED:
                logger.info("Cal.com circuit breaker closed by another replica's probe")
                self._open_for = self._open_base
                self._enter(BreakerState.CLOSED)
        elif isinstance(word, tuple):
            open_until, open_for = word
            # Open until the probe's verdict, even past open_until: a probe may be in the air.
            if self._state is BreakerState.CLOSED:
                logger.warning("Cal.com circuit breaker open (another replica saw Cal.com failing)")
                self._enter(BreakerState.OPEN)
                self._consecutive = 0
                self._outcomes.clear()
            if self._state is not BreakerState.CLOSED:
                self._next_probe = max(self._next_probe, open_until)
                self._open_for = max(self._open_for, open_for)

    @property
    def _record_ttl(self) -> float:
        """The cluster record outlives the longest open interval, and then some."""
        return 2 * self._open_max

    def _enter(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self.transitions[state] += 1
