"""The port the cache core fetches through, and the errors it may raise.

Adapters: :mod:`availability.calcom` (the real Cal.com API over HTTP) and the
sandbox, which is reached through the same Cal.com adapter over loopback HTTP.
The core depends on this module only, never on an adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from availability.slots import Slot

__all__ = [
    "EventTypeInfo",
    "EventTypeNotFound",
    "Upstream",
    "UpstreamAuthError",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamThrottled",
    "UpstreamUnavailable",
]


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


@dataclass(frozen=True, slots=True)
class EventTypeInfo:
    """What the cache needs to know about an event type beyond its slots."""

    event_type_id: int
    length_minutes: int | None
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
    ) -> Mapping[date, Sequence[Slot]]:
        """Slots starting on the UTC days ``first_day`` .. ``last_day`` (both inclusive).

        Returns the slots grouped by the UTC date of their start, ascending;
        days without slots may be absent. ``duration_minutes`` 0 means the
        event type's default length. ``timeout`` bounds the whole call in
        seconds (the caller's remaining deadline). Raises :class:`UpstreamError`.
        """
        ...

    async def fetch_event_type(
        self, event_type_id: int, *, timeout: float | None = None
    ) -> EventTypeInfo:
        """The event type's hosts and default length. Raises :class:`UpstreamError`."""
        ...
