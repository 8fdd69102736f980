"""Retry failed Cal.com calls, a little, and never so much that retries become the load.

What is retried: failures that another attempt may not repeat, i.e. 5xx,
timeouts, connection errors and malformed bodies (all
:class:`~availability.core.ports.UpstreamUnavailable`). What never is:

- 4xx (:class:`UpstreamRejected`, :class:`EventTypeNotFound`,
  :class:`UpstreamAuthError`): the same request gets the same answer;
- 429 (:class:`UpstreamThrottled`): Cal.com blocks the key until its reset,
  typically a minute, beyond any caller's deadline; the budget pauses the
  whole cluster until then, so a retry before the reset could only be
  refused (and one after it would be too late to matter);
- our own refusals (:class:`BudgetExhausted`, :class:`CircuitOpen`,
  :class:`Overloaded`): no call was made, and another attempt would not make one.

How: at most ``attempts`` attempts in all (default 3), with "full jitter"
backoff (a delay drawn uniformly from ``[0, min(max_delay, base_delay *
2**n)]`` before retry ``n + 1``; AWS architecture blog, "Exponential Backoff
And Jitter"), and only while the call's own bound (its ``timeout``) leaves
at least ``min_attempt`` seconds for another attempt. The delays are small
(25 ms, then up to 50 ms): a failure that a retry cannot fix should still be
answered in about 0.1 s, and callers wait for a shared fetch only as long as
their deadline allows anyway.

A retry budget (gRPC A6 retry throttling, Finagle's ``RetryBudget``, Google
SRE book ch. 22) keeps retries from multiplying load in an outage: over a
sliding ``window`` (10 s) on the injected clock, retries may be at most
``ratio`` (10 %) of the calls, or ``minimum`` (5), whichever is more. The
floor exists because Cal.com's whole budget is 2 calls a second: at that
rate 10 % is one retry every five seconds, too few for a flaky Cal.com (every
other call failing) not to fail the cold reads of a lightly loaded service,
while five retries per 10 s are at most a quarter of Cal.com's rate. Per
process; the Cal.com budget and breaker underneath bound the cluster.

Sits outside the breaker and the budget (see ``server.py``): each attempt
passes the breaker (an open one stops the retries) and spends one unit of
the Cal.com budget.

Counters for metrics (plain attributes, read-only by convention):
``calls`` (calls made through this object), ``attempts`` (attempts passed
on, first ones included), ``retried`` (attempts after the first) and
``budget_denied`` (retries the retry budget refused).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import TypeVar

from availability.core.clock import Clock
from availability.core.ports import (
    BudgetExhausted,
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

__all__ = ["RetryBudget", "RetryingUpstream", "retryable"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NOT_RETRIED = (UpstreamThrottled, BudgetExhausted, CircuitOpen, Overloaded)


def retryable(error: UpstreamError) -> bool:
    """Whether another attempt may get a different answer (see the module docstring)."""
    return isinstance(error, UpstreamUnavailable) and not isinstance(error, _NOT_RETRIED)


class RetryBudget:
    """Retries in any ``window`` seconds: at most ``max(minimum, ratio * calls)``."""

    def __init__(
        self, *, clock: Clock, ratio: float = 0.1, minimum: int = 5, window: float = 10.0
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError("ratio must be in [0, 1]")
        if minimum < 0 or not window > 0:
            raise ValueError("minimum must not be negative and window must be positive")
        self._clock = clock
        self._ratio = ratio
        self._minimum = minimum
        self._window = window
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()

    def record_call(self) -> None:
        """A call (not a retry) was made: it earns ``ratio`` of a retry."""
        now = self._clock()
        self._expire(now)
        self._calls.append(now)

    def try_retry(self) -> bool:
        """Take one retry if the budget has one."""
        now = self._clock()
        self._expire(now)
        if len(self._retries) >= max(self._minimum, self._ratio * len(self._calls)):
            return False
        self._retries.append(now)
        return True

    def _expire(self, now: float) -> None:
        for taken in (self._calls, self._retries):
            while taken and taken[0] <= now - self._window:
                taken.popleft()


class RetryingUpstream:
    """An :class:`~availability.core.ports.Upstream` that retries what is worth retrying."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        attempts: int = 3,
        budget: RetryBudget | None = None,
        base_delay: float = 0.025,
        max_delay: float = 0.25,
        min_attempt: float = 0.1,
        default_timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._upstream = upstream
        self._rng = rng or random.Random()
        self._attempts = attempts
        self._budget = budget or RetryBudget(clock=clock)
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._min_attempt = min_attempt
        self._default_timeout = default_timeout
        # Deadlines are real time (a caller's); tests pass a fake timer and sleep.
        self._sleep = sleep
        self._timer = timer
        self.calls = 0
        self.attempts = 0
        self.retried = 0
        self.budget_denied = 0

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
            lambda left: self._upstream.fetch_slots(
                event_type_id,
                first_day,
                last_day,
                duration_minutes=duration_minutes,
                timeout=left,
                priority=priority,
            ),
            timeout,
        )

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        return await self._call(
            lambda left: self._upstream.fetch_event_type(event_type_id, timeout=left), timeout
        )

    async def _call(self, attempt: Callable[[float], Awaitable[T]], timeout: float | None) -> T:
        """Attempts share the call's bound: each gets what the earlier ones left."""
        deadline = self._timer() + (self._default_timeout if timeout is None else timeout)
        self.calls += 1
        self._budget.record_call()
        tries = 0
        while True:
            tries += 1
            self.attempts += 1
            try:
                return await attempt(max(0.0, deadline - self._timer()))
            except UpstreamError as error:
                delay = self._backoff(tries)
                if not self._may_retry(error, tries, delay, deadline):
                    raise
                logger.debug("retrying a Cal.com call in %.3f s after: %s", delay, error)
            self.retried += 1
            await self._sleep(delay)

    def _backoff(self, tries: int) -> float:
        """Full jitter: uniform over [0, the exponential cap]."""
        return self._rng.uniform(0.0, min(self._max_delay, self._base_delay * 2 ** (tries - 1)))

    def _may_retry(self, error: UpstreamError, tries: int, delay: float, deadline: float) -> bool:
        if not retryable(error) or tries >= self._attempts:
            return False
        if deadline - (self._timer() + delay) < self._min_attempt:
            return False  # no time left for an attempt that could still succeed
        if not self._budget.try_retry():
            self.budget_denied += 1
            return False
        return True
