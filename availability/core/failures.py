"""Failure memory: a failed fetch of a bucket is remembered for a short time.

Single-flight merges only the callers that arrive while a fetch is in the
air. Against a failing Cal.com each fetch fails in milliseconds, so without
memory every caller of a storm starts a fetch of its own: 20 callers on 4
buckets cost Cal.com about 30 calls per bucket in 5 s and burnt the minute's
budget. Remembering the failure of a bucket (its key *and* stamp) for
``ttl`` seconds (default 1 s) lets callers arriving meanwhile share it, or
their stale bucket, for free: at most one fetch per bucket per ``ttl``.

Keyed by stamp, so an invalidation (a new stamp) is never answered with an
older failure. Per process: the breaker (see
:mod:`availability.resilience.breaker`) is what the cluster shares. Reads
time from the injected clock.
"""

from __future__ import annotations

from collections.abc import Hashable

from availability.core.clock import Clock
from availability.core.ports import UpstreamError

__all__ = ["FailureMemory"]


class FailureMemory:
    def __init__(self, *, clock: Clock, ttl: float = 1.0) -> None:
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        self._clock = clock
        self._ttl = ttl
        # Insertion order is expiry order (one TTL, a clock that never goes back),
        # so expired entries are always at the front.
        self._failures: dict[Hashable, tuple[float, UpstreamError]] = {}

    def remember(self, key: Hashable, error: UpstreamError) -> None:
        if self._ttl <= 0:
            return
        now = self._clock()
        self._expire(now)
        self._failures.pop(key, None)
        self._failures[key] = (now + self._ttl, error)

    def recall(self, key: Hashable) -> UpstreamError | None:
        """The failure remembered for ``key``, if it is still fresh."""
        entry = self._failures.get(key)
        if entry is None:
            return None
        if self._clock() < entry[0]:
            return entry[1]
        self._expire(self._clock())
        return None

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._failures)

    def _expire(self, now: float) -> None:
        while self._failures:
            oldest = next(iter(self._failures))
            if self._failures[oldest][0] > now:
                break
            del self._failures[oldest]
