"""The ports: what the core needs from the outside world, and the errors it may see.

Adapters implement them: :mod:`availability.adapters.calcom` (Cal.com over
HTTP, and the sandbox through it) implements :class:`Upstream`;
:mod:`availability.adapters.stores` implements :class:`CacheStore` and
:class:`Budget` in memory and in Redis. The core depends on this module
only, never on an adapter.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from availability.core.buckets import Bucket
from availability.core.slots import Slot

__all__ = [
    "BUDGET_WINDOW",
    "Budget",
    "BudgetExhausted",
    "CacheStore",
    "CircuitOpen",
    "EventTypeInfo",
    "EventTypeNotFound",
    "Overloaded",
    "Priority",
    "Upstream",
    "UpstreamAuthError",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamThrottled",
    "UpstreamUnavailable",
    "Usable",
]


# -- the upstream (Cal.com) --------------------------------------------------------


class Priority(enum.IntEnum):
    INTERACTIVE = 0
    """A caller is waiting for this call."""
    BACKGROUND = 1
    """Nobody waits (refreshing a bucket ahead of its expiry): only a share of the budget."""


class UpstreamError(Exception):
    """Base class. The message is safe to show to a caller: it never holds a secret."""


class UpstreamRejected(UpstreamError):
    """The upstream rejected the request as invalid (HTTP 400)."""


class EventTypeNotFound(UpstreamError):
    """The upstream does not know the event type (HTTP 404)."""


class UpstreamAuthError(UpstreamError):
    """The upstream rejected our API key (HTTP 401/403)."""


class UpstreamUnavailable(UpstreamError):
    """Throttled (429), failing (5xx), too slow, unreachable or talking nonsense."""


class UpstreamThrottled(UpstreamUnavailable):
    """Cal.com refused for its rate limit (429): it blocks the key until ``retry_after``."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExhausted(UpstreamUnavailable):
    """No Cal.com call may be made now without exceeding the shared rate limit."""


class CircuitOpen(UpstreamUnavailable):
    """Cal.com has been failing: the circuit breaker refused the call without making it."""


class Overloaded(UpstreamUnavailable):
    """Too many reads are already waiting for Cal.com: this miss was refused at once
    (load shedding); cache hits and stale buckets are still served."""


@dataclass(frozen=True, slots=True)
class EventTypeInfo:
    """What the cache needs to know about an event type beyond its slots."""

    event_type_id: int
    host_ids: frozenset[int]
    """Cal.com user ids whose calendars decide this event type's availability."""


class Upstream(Protocol):
    """Where slots come from."""

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
        """Slots starting on the UTC days ``first_day`` .. ``last_day`` (both inclusive).

        Returns the slots grouped by the UTC date of their start, ascending;
        days without slots may be absent. ``duration_minutes`` 0 means the
        event type's default length. ``timeout`` bounds the whole call in
        seconds (the caller's remaining deadline). ``priority`` says whether a
        caller waits for it (a budget spends its last share on those only).
        Raises :class:`UpstreamError`.
        """
        ...

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        """The event type's hosts. Raises :class:`UpstreamError`."""
        ...


# -- the cache store -----------------------------------------------------------------

Usable = Callable[[int, Bucket, Sequence[int | None]], bool]
"""Whether bucket number ``i`` may be served given the versions just read.

A store with a local tier uses it to decide when its local copy is outdated
and the shared copy must be read instead."""


class CacheStore(Protocol):
    """Keeps values and counters; the core owns keys and decides validity.

    Buckets are read together with the versions that judge them in one call,
    so a remote store answers both in one round trip. Versions only ever
    grow: a missing one is re-created from a seed newer than any value it
    could have held (see :mod:`availability.core.versions`).
    """

    async def read(
        self,
        bucket_keys: Sequence[str],
        version_keys: Sequence[str],
        usable: Usable | None = None,
    ) -> tuple[list[Bucket | None], list[int | None]]:
        """Buckets (None where absent) and versions (None where absent)."""
        ...

    async def write(self, entries: Sequence[tuple[str, Bucket, float]]) -> None:
        """Store ``(key, bucket, ttl_seconds)`` entries."""
        ...

    async def seed_versions(self, keys: Sequence[str], seed: int, ttl: float) -> list[int]:
        """Set each absent version to ``seed``; return every version's current value."""
        ...

    async def bump_versions(self, keys: Sequence[str], seed: int, ttl: float) -> None:
        """Set each version to ``max(v + 1, seed)``; an absent one becomes ``seed`` (already
        newer). ``seed`` is the clock in microseconds, so a version tells when it was last
        bumped."""
        ...

    async def read_records(self, keys: Sequence[str]) -> list[Any]:
        """JSON-safe records (None where absent)."""
        ...

    async def write_record(self, key: str, record: Any, ttl: float) -> None:
        """Store a JSON-safe record; the caller never mutates it afterwards."""
        ...

    async def lease(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        """Try to become the one fetcher of each key for ``ttl`` seconds (cluster-wide)."""
        ...

    async def release(self, keys: Sequence[str], token: str) -> None: ...

    async def close(self) -> None: ...

    def trusted_for(self, version_keys: Sequence[str], versions: Sequence[int]) -> float:
        """Seconds from now for which ``versions`` (of ``version_keys``, as just read) are
        sure to be current as far as any caller told after now can tell: ``inf`` where
        every invalidation passes through this process (one process's memory), the rest of
        the trust window where a shared store's versions were confirmed recently, else 0."""
        ...


# -- the Cal.com call budget -----------------------------------------------------------

BUDGET_WINDOW = 62.0
"""Seconds of the budget's sliding window: Cal.com's 60 s plus a margin for travel
time (a unit is taken before the call travels and Cal.com counts arrivals; without
the margin the 121st call was measured arriving 59.99 s after the first)."""


class Budget(Protocol):
    """Cal.com calls per sliding window, shared by every replica of a deployment."""

    limit: int

    async def acquire(self, priority: Priority = Priority.INTERACTIVE) -> bool:
        """Take one call from the budget; False if none is left."""
        ...

    async def pause(self, seconds: float) -> None:
        """Take nothing for ``seconds`` (Cal.com has blocked the key)."""
        ...

    async def in_window(self) -> int:
        """Calls taken in the current window (the whole cluster's, when shared)."""
        ...

    async def close(self) -> None: ...
