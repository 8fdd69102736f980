"""The observer port: what the cache tells whoever watches it (metrics, in practice).

The core counts nothing itself and imports no metrics library: it calls a
:class:`CacheObserver` at a few points of the read path and an adapter
(:mod:`availability.adapters.observability.metrics`) turns the calls into
Prometheus counters. The calls sit on the hit path, so an observer must only
add to plain numbers and return: no I/O, no locks, no allocation worth
measuring. :data:`NO_OBSERVER` is the default and costs one method call.

What is reported:

* :meth:`~CacheObserver.lookups`: every day bucket a read needed, exactly once,
  by how it was had (:data:`LookupResult`). The counts of one read add up to
  the days it asked for.
* :meth:`~CacheObserver.answered`: every answer, by the source its freshness
  names, with the age of its oldest bucket.
* :meth:`~CacheObserver.refreshed`: measured staleness. When a bucket is
  fetched again because its TTL ran out while its stamp was still current
  (nobody reported a change), or a fresh read re-fetches a bucket the cache
  holds as current, the new slots are compared with the old ones. A change
  means a booking (or cancellation) nobody reported: every answer served from
  the old bucket since its fetch *may* have offered a taken slot, so they are
  reported as ``suspect_hits``, an upper bound on the stale answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, Protocol

if TYPE_CHECKING:
    from availability.core.cache import Source

__all__ = ["LOOKUP_RESULTS", "NO_OBSERVER", "CacheObserver", "LookupResult"]

LookupResult = Literal["hit", "miss", "coalesced", "stale", "bypass"]
"""How a read had one day bucket:

* ``hit``: from the cache, current and within its TTL;
* ``miss``: this read fetched it (or failed to);
* ``coalesced``: joined a fetch another read had in flight;
* ``stale``: its fetch failed and the expired bucket was served instead;
* ``bypass``: a fresh read, which skips the cache by design.
"""

LOOKUP_RESULTS: Final[tuple[LookupResult, ...]] = ("hit", "miss", "coalesced", "stale", "bypass")


class CacheObserver(Protocol):
    """Told what the cache did; see the module docstring for what each call means."""

    def lookups(self, result: LookupResult, count: int) -> None:
        """``count`` buckets of one read were had as ``result``."""
        ...

    def answered(self, source: Source, age: float) -> None:
        """One answer was served; ``age`` is its oldest bucket's, in seconds."""
        ...

    def refreshed(self, changed: bool, suspect_hits: int) -> None:
        """A bucket still believed current was fetched again; ``changed``: its slots
        differ. ``suspect_hits``: answers served from the old bucket (0 if unchanged)."""
        ...


class _NoObserver:
    __slots__ = ()

    def lookups(self, result: LookupResult, count: int) -> None:
        return None

    def answered(self, source: Source, age: float) -> None:
        return None

    def refreshed(self, changed: bool, suspect_hits: int) -> None:
        return None


NO_OBSERVER: Final[CacheObserver] = _NoObserver()
"""Watches nothing: the cache's default."""
