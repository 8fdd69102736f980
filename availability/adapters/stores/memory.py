"""The embedded cache store: one process's memory, through aiocache's ``SimpleMemoryCache``.

Versions only ever grow; a missing one is re-created from a seed newer than
anything it could have held (see :mod:`availability.core.versions`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from aiocache import SimpleMemoryCache

from availability.core.buckets import Bucket
from availability.core.ports import Usable

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`CacheStore` in this process: aiocache's :class:`SimpleMemoryCache`.

    Buckets are kept as the immutable :class:`Bucket` objects themselves:
    nothing to parse on a hit and nothing a reader could mutate. (Redis has
    its own store, :mod:`availability.adapters.stores.redis_store`, which speaks JSON.)
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
        # max(v + 1, seed): a bumped version tells when it was bumped (see
        # availability.core.versions). No await yields between the get and the set.
        for key in keys:
            current = await self._cache.get(key)
            value = seed if current is None else max(int(current) + 1, seed)
            await self._cache.set(key, value, ttl=ttl)

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
