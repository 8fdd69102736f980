"""The embedded cache store: one process's memory, a bounded dict with lazy expiry.

Versions only ever grow; a missing one is re-created from a seed newer than
anything it could have held (see :mod:`availability.core.versions`). So the
store may drop any entry at any time, and it does: an entry past its TTL is
dropped when it is next read, and past ``max_entries`` the oldest-written
entries go first.

Why not aiocache's ``SimpleMemoryCache`` (what this used to be): it arms an
``asyncio`` TimerHandle per key to expire it, about 300 bytes per entry and
three entries (a bucket and its two day versions) per cached bucket, and it
has no bound, so a process's memory grew with every day anyone asked for.
Here an entry is its value and its expiry instant, nothing else.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

from availability.core.buckets import Bucket
from availability.core.clock import Clock
from availability.core.ports import Usable

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`CacheStore` in this process.

    Buckets are kept as the immutable :class:`Bucket` objects themselves:
    nothing to parse on a hit and nothing a reader could mutate. (Redis has
    its own store, :mod:`availability.adapters.stores.redis_store`, which speaks JSON.)
    """

    def __init__(self, *, clock: Clock = time.monotonic, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        # Expiry is only ever compared with this clock's own readings, so any
        # clock that does not go backwards will do.
        self._clock = clock
        self._max_entries = max_entries
        # key -> (value, expires_at). A plain dict keeps insertion order: eviction
        # takes the oldest writes first, in batches (see _evict).
        self._entries: dict[str, tuple[Any, float]] = {}

    @property
    def size(self) -> int:
        """Entries held right now (expired ones not yet read included)."""
        return len(self._entries)

    def _get(self, key: str, now: float) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def _set(self, key: str, value: Any, ttl: float, now: float) -> None:
        # Re-inserted, not updated in place: a rewrite counts as the newest write.
        self._entries.pop(key, None)
        self._entries[key] = (value, now + ttl)
        if len(self._entries) > self._max_entries:
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest-written tenth of the entries.

        In one batch, so the scan over the dict's front is paid once per
        ``max_entries / 10`` writes rather than on every write.
        """
        keep = self._max_entries - max(1, self._max_entries // 10)
        for key in list(itertools.islice(self._entries, len(self._entries) - keep)):
            del self._entries[key]

    async def read(
        self,
        bucket_keys: Sequence[str],
        version_keys: Sequence[str],
        usable: Usable | None = None,
    ) -> tuple[list[Bucket | None], list[int | None]]:
        now = self._clock()
        get = self._get
        return [get(k, now) for k in bucket_keys], [get(k, now) for k in version_keys]

    async def write(self, entries: Sequence[tuple[str, Bucket, float]]) -> None:
        now = self._clock()
        for key, bucket, ttl in entries:
            self._set(key, bucket, ttl, now)

    async def seed_versions(self, keys: Sequence[str], seed: int, ttl: float) -> list[int]:
        now = self._clock()
        values = []
        for key in keys:
            value = self._get(key, now)
            if value is None:  # someone else seeded or bumped it first, and theirs stands
                value = seed
                self._set(key, seed, ttl, now)
            values.append(int(value))
        return values

    async def bump_versions(self, keys: Sequence[str], seed: int, ttl: float) -> None:
        # max(v + 1, seed): a bumped version tells when it was bumped (see
        # availability.core.versions). No await yields between the read and the write.
        now = self._clock()
        for key in keys:
            value = self._get(key, now)
            self._set(key, seed if value is None else max(int(value) + 1, seed), ttl, now)

    async def read_records(self, keys: Sequence[str]) -> list[Any]:
        now = self._clock()
        return [self._get(k, now) for k in keys]

    async def write_record(self, key: str, record: Any, ttl: float) -> None:
        self._set(key, record, ttl, self._clock())

    async def lease(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        # One process: the in-process single-flight already makes it the only fetcher.
        return [True] * len(keys)

    async def release(self, keys: Sequence[str], token: str) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def trusted_for(self, version_keys: Sequence[str], versions: Sequence[int]) -> float:
        # Every invalidation of this store passes through this process's SlotCache.
        return math.inf
