"""The shared store: Redis through aiocache's ``RedisCache``, JSON only (never pickle).

Every request-path operation is one round trip: ``MGET`` for buckets with
their versions, a Lua script for seeding or bumping versions (atomic, so a
bump can never land between "is it there?" and "set it"), ``SET NX PX`` for
fetch leases. No ``KEYS``, ``SCAN`` or ``FLUSHDB`` anywhere: keys expire.

aiocache 0.12 takes host/port/db/password only; the URL (``redis://``,
``rediss://`` for TLS, ``user:password@`` for ACL users, ``/db``) is parsed
with redis-py's own parser and the rest handed to its connection pool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiocache import RedisCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from availability.core.buckets import Bucket
from availability.core.ports import Usable

__all__ = ["REDIS_ERRORS", "RedisStore", "redis_cache_from_url"]

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
"""What a Redis call raises when Redis is unreachable, hung or restarting."""

# KEYS: version keys; ARGV[1]: seed, ARGV[2]: ttl in ms. Absent -> seed.
_SEED = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2])
end
return redis.call('MGET', unpack(KEYS))
"""

# max(v + 1, seed); absent -> the seed (newer than anything it could have held). So a
# bumped version is at least the bumper's clock in microseconds: it tells when it was bumped.
_BUMP = """
local seed = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and tonumber(v) + 1 >= seed then
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[2])
  else
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  end
end
return #KEYS
"""

# One SET NX PX per key; 1 where this caller got the lease.
_LEASE = """
local got = {}
for i, key in ipairs(KEYS) do
  got[i] = redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
end
return got
"""

# Delete only leases still holding our token: an expired lease may be someone else's now.
_RELEASE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


def redis_cache_from_url(url: str) -> Any:
    """An aiocache ``RedisCache`` for ``url`` (JSON serializer, no aiocache timeout)."""
    options: dict[str, Any] = dict(parse_url(url))  # type: ignore[no-untyped-call]
    host = options.pop("host", "127.0.0.1")
    port = options.pop("port", 6379)
    db = options.pop("db", 0)
    password = options.pop("password", None)
    # Short: a Redis that does not answer must cost a read little (it degrades to
    # the local tier); override with ?socket_timeout=... in the URL.
    options.setdefault("socket_timeout", 0.5)
    # A pooled connection that died with a restarted Redis fails once: retry at
    # once on a fresh one rather than declare Redis down.
    options.setdefault("retry", Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
    options.setdefault("retry_on_error", [RedisConnectionError])
    connect_timeout = options.pop("socket_connect_timeout", 0.5)
    # timeout=None: redis-py bounds each call itself; aiocache would add a task per call.
    return RedisCache(
        endpoint=host,
        port=port,
        db=db,
        password=password,
        timeout=None,
        create_connection_timeout=connect_timeout,
        connection_pool_kwargs=options,
    )


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore:
    """A :class:`~availability.core.ports.CacheStore` in Redis, shared by every replica."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._client = cache.client

    @property
    def client(self) -> Any:
        """The redis-py client underneath (for other cluster-wide state, e.g. the budget)."""
        return self._client

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(redis_cache_from_url(url))

    async def read(
        self,
        bucket_keys: Sequence[str],
        version_keys: Sequence[str],
        usable: Usable | None = None,
    ) -> tuple[list[Bucket | None], list[int | None]]:
        if not bucket_keys and not version_keys:
            return [], []  # MGET needs at least one key
        values = await self._cache.multi_get([*bucket_keys, *version_keys])
        split = len(bucket_keys)
        buckets = [None if v is None else Bucket.from_json(v) for v in values[:split]]
        versions = [None if v is None else int(v) for v in values[split:]]
        return buckets, versions

    async def read_buckets(self, keys: Sequence[str]) -> list[Bucket | None]:
        if not keys:
            return []
        values = await self._cache.multi_get(list(keys))
        return [None if v is None else Bucket.from_json(v) for v in values]

    async def write(self, entries: Sequence[tuple[str, Bucket, float]]) -> None:
        if not entries:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, bucket, ttl in entries:
                pipe.set(key, json.dumps(bucket.to_json()), px=_ms(ttl))
            await pipe.execute()

    async def seed_versions(self, keys: Sequence[str], seed: int, ttl: float) -> list[int]:
        values = await self._client.eval(_SEED, len(keys), *keys, seed, _ms(ttl))
        return [int(v) for v in values]

    async def bump_versions(self, keys: Sequence[str], seed: int, ttl: float) -> None:
        await self._client.eval(_BUMP, len(keys), *keys, seed, _ms(ttl))

    async def read_records(self, keys: Sequence[str]) -> list[Any]:
        return list(await self._cache.multi_get(list(keys)))

    async def write_record(self, key: str, record: Any, ttl: float) -> None:
        await self._cache.set(key, record, ttl=float(ttl))

    async def lease(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        if not keys:
            return []
        got = await self._client.eval(_LEASE, len(keys), *keys, token, _ms(ttl))
        return [bool(g) for g in got]

    async def release(self, keys: Sequence[str], token: str) -> None:
        if keys:
            await self._client.eval(_RELEASE, len(keys), *keys, token)

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    def trusted_for(self, version_keys: Sequence[str], versions: Sequence[int]) -> float:
        # Another replica may bump any version at any moment: nothing is trusted.
        return 0.0

    async def close(self) -> None:
        # Not self._cache.close(): aiocache 0.12 calls redis-py's deprecated close().
        await self._client.aclose()
