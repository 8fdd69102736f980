"""The cache store port, and its aiocache adapter.

The core owns keys and decides validity; a store only keeps values and
counters. Buckets are read together with the versions that judge them in one
call, so a remote store answers both in one round trip.

Versions only ever grow. A version that is missing (never set, evicted, or
lost with a restarted store) is re-created from a *seed* taken from the clock
in microseconds, which exceeds any value it could have had before; so losing
versions can only invalidate buckets, never make an old one valid again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiocache import SimpleMemoryCache

from availability.buckets import Bucket

__all__ = ["CacheStore", "MemoryStore", "Usable", "memory_store"]

Usable = Callable[[int, Bucket, Sequence[int | None]], bool]
"""Whether bucket number ``i`` may be served given the versions just read.

A store with a local tier uses it to decide when its local copy is outdated
and the shared copy must be read instead."""


class CacheStore(Protocol):
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
        """Add one to each version; an absent one becomes ``seed`` (already newer)."""
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


class MemoryStore:
    """A :class:`CacheStore` in this process: aiocache's :class:`SimpleMemoryCache`.

    Buckets are kept as the immutable :class:`Bucket` objects themselves:
    nothing to parse on a hit and nothing a reader could mutate. (Redis has
    its own store, :mod:`availability.redis_store`, which speaks JSON.)
    """

    def __init__(self) -> None:
        # timeout=None: aiocache would otherwise wrap every call in asyncio.wait_for,
        # a task per cache hit, for a dict lookup that cannot block.
        self._cache = SimpleMemoryCache(timeout=None)

    async def read(
        self,
        bucket_keys: Sequence[str],
        version_keys: Sequence[str],
        usable: Usable | None = None,
    ) -> tuple[list[Bucket | None], list[int | None]]:
        values = await self._cache.multi_get([*bucket_keys, *version_keys])
        split = len(bucket_keys)
        buckets: list[Bucket | None] = list(values[:split])
        versions = [None if v is None else int(v) for v in values[split:]]
        return buckets, versions

    async def write(self, entries: Sequence[tuple[str, Bucket, float]]) -> None:
        for key, bucket, ttl in entries:
            await self._cache.set(key, bucket, ttl=ttl)

    async def seed_versions(self, keys: Sequence[str], seed: int, ttl: float) -> list[int]:
        for key in keys:
            # ValueError: someone else seeded or bumped it first, and theirs stands.
            with contextlib.suppress(ValueError):
                await self._cache.add(key, seed, ttl=ttl)
        return [int(v) for v in await self._cache.multi_get(list(keys))]

    async def bump_versions(self, keys: Sequence[str], seed: int, ttl: float) -> None:
        for key in keys:
            try:
                await self._cache.add(key, seed, ttl=ttl)
            except ValueError:
                await self._cache.increment(key, 1)
                await self._cache.expire(key, ttl)

    async def read_records(self, keys: Sequence[str]) -> list[Any]:
        return list(await self._cache.multi_get(list(keys)))

    async def write_record(self, key: str, record: Any, ttl: float) -> None:
        await self._cache.set(key, record, ttl=ttl)

    async def lease(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        # One process: the in-process single-flight already makes it the only fetcher.
        return [True] * len(keys)

    async def release(self, keys: Sequence[str], token: str) -> None:
        return None

    async def close(self) -> None:
        await self._cache.close()


def memory_store() -> MemoryStore:
    """The embedded single-process store."""
    return MemoryStore()
