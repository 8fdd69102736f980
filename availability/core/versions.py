"""Version stamps: how a bucket knows whether an invalidation happened since its fetch.

Every bucket is covered by a set of version counters: everything, its event
type, each of its hosts; and per day the event type's day and each host's
day (key names in :mod:`availability.core.keys`). A bucket's *stamp* is the
sum of its versions read before its fetch began. Versions only grow, so any
bump changes the sum; a reader serves a bucket only while its stamp equals
the current sum. A fetch that was in flight during an invalidation thus
writes a bucket no later reader accepts, where deleting keys would lose to
it.

A missing version (never set, evicted, lost with a restarted store) is
re-created from a *seed*: the clock in microseconds, newer than any value it
could have held. So losing versions can only invalidate buckets, never make
an old one valid again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from availability.core.buckets import Bucket
from availability.core.clock import Clock
from availability.core.keys import KeySchema
from availability.core.ports import CacheStore

__all__ = ["StampCheck", "VersionLayout", "VersionSeed", "current_versions", "version_layout"]


@dataclass(frozen=True, slots=True)
class VersionLayout:
    """Which versions cover the buckets of one read, and how they add up to stamps.

    Layout: everything, the event type, each host; then per day the event
    type's day and each host's day. A day's stamp is the sum of the first
    group and its own group.
    """

    keys: tuple[str, ...]
    head: int
    per_day: int

    def stamps(self, values: Sequence[int]) -> list[int]:
        """One stamp per day, from the current value of every key, in order."""
        base = sum(values[: self.head])
        step = self.per_day
        return [base + sum(values[i : i + step]) for i in range(self.head, len(values), step)]


# Hot ranges repeat: their keys are built once, not on every read.
@functools.lru_cache(maxsize=4096)
def version_layout(
    keys: KeySchema, event_type_id: int, hosts: tuple[int, ...], first: date, count: int
) -> VersionLayout:
    """The versions covering ``count`` UTC days from ``first`` of an event type."""
    names = [
        keys.everything_version(),
        keys.event_type_version(event_type_id),
        *(keys.host_version(h) for h in hosts),
    ]
    for day in (first + timedelta(days=i) for i in range(count)):
        names.append(keys.day_version(event_type_id, day))
        names.extend(keys.host_day_version(h, day) for h in hosts)
    return VersionLayout(tuple(names), head=2 + len(hosts), per_day=1 + len(hosts))


class StampCheck:
    """The :data:`~availability.core.ports.Usable` check a store with a local tier
    applies to its local copies: current stamp and not expired at ``now``.

    The stamps are summed once per read, on the first copy judged, from the
    versions the store just read.
    """

    __slots__ = ("_layout", "_now", "_stamps")

    def __init__(self, layout: VersionLayout, now: float) -> None:
        self._layout = layout
        self._now = now
        self._stamps: list[int] | None = None

    def __call__(self, index: int, bucket: Bucket, versions: Sequence[int | None]) -> bool:
        if self._stamps is None:
            known = [v for v in versions if v is not None]
            if len(known) != len(versions):
                return False  # a version is missing: it will be seeded, newer than any stamp
            self._stamps = self._layout.stamps(known)
        return bucket.stamp == self._stamps[index] and self._now < bucket.expires_at


class VersionSeed:
    """Seeds for new or bumped versions: the clock in microseconds, strictly increasing."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0

    def __call__(self) -> int:
        self._last = max(int(self._clock() * 1_000_000), self._last + 1)
        return self._last


async def current_versions(
    store: CacheStore,
    keys: Sequence[str],
    versions: Sequence[int | None],
    seed: VersionSeed,
    ttl: float,
) -> list[int]:
    """``versions`` (as just read for ``keys``) with every missing one seeded in the store."""
    if all(v is not None for v in versions):
        return [v for v in versions if v is not None]
    missing = [k for k, v in zip(keys, versions, strict=True) if v is None]
    seeded = dict(zip(missing, await store.seed_versions(missing, seed(), ttl), strict=True))
    return [seeded[k] if v is None else v for k, v in zip(keys, versions, strict=True)]
