"""A bounded in-process tier in front of the shared Redis store.

Coherence across replicas comes from versions, not from evicting copies:
every read fetches the versions from Redis in the same ``MGET`` as the
buckets this process does not hold, and a local bucket is served only if the
core's ``usable`` check passes against those versions. So after
``InvalidateSlots`` returns on any replica, no replica serves a bucket
fetched before it, without a pub/sub bus whose messages can be lost. A local
copy that fails the check (invalidated, or expired while another replica
refreshed Redis) costs one more ``MGET`` for just those keys.

Bounded trust (``trust`` seconds, 0: off): a read whose buckets are all
local, with every version confirmed by a Redis read *sent* less than
``trust`` ago, is answered from this process without asking Redis. An
invalidation bumps the versions in Redis and returns only once ``trust`` has
passed since Redis acknowledged the bump: every window opened by a read that
Redis answered before the bump has closed by then, on every replica, whatever
the network delay (windows are timed on the monotonic clock from when the
read was sent, and monotonic clocks run at the same rate). So after
``InvalidateSlots`` returns, no replica serves a bucket fetched before it.

A window is renewed before it closes: a trusted read made in the second half
of its oldest window (:data:`RECONFIRM_AFTER`) sends one background ``MGET``
of its versions, which confirms them exactly as a read would (from when it
was sent). The read itself waits for nothing. So while a key is read
steadily its window never lapses: hits stay off Redis, and no crowd of
in-flight readers, finding the window closed at once, all wait on Redis
together. One renewal per version key is in flight at a time; a key read less
than twice per window is simply asked again, as before.

Redis outage: reads go on from the local tier, judged against the last
versions seen (and locally seeded ones for keys never seen); invalidations
bump those local versions, so this replica never serves what it was told is
gone, and are replayed to Redis when it answers again, which makes the
cluster coherent again. Such a replayed bump was never waited out (its
invalidation returned while Redis was unreachable, when only this replica
could honour it anyway): a replica that confirmed its versions just before
the replay may serve what it invalidated for at most ``trust`` more. While
down, Redis is retried at most every ``retry_after`` seconds so that a dead
Redis does not add its timeout to every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from availability.adapters.stores.redis_store import REDIS_ERRORS, RedisStore
from availability.core.buckets import Bucket
from availability.core.clock import Clock
from availability.core.ports import Usable

__all__ = ["RECONFIRM_AFTER", "TieredStore"]

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class _Lru(OrderedDict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.evictions = 0

    def get_recent(self, key: K) -> V | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
            self.evictions += 1


RECONFIRM_AFTER = 0.5
"""The share of a trust window after which a trusted read renews it in the background."""


class TieredStore:
    def __init__(
        self,
        shared: RedisStore,
        *,
        clock: Clock,
        max_local_buckets: int = 10_000,
        retry_after: float = 1.0,
        trust: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``monotonic`` times the trust windows and ``sleep`` waits them out (tests pass
        a virtual pair; both must be the same time)."""
        self._shared = shared
        self._clock = clock
        self._trust = trust
        self._monotonic = monotonic
        self._sleep = sleep
        # Version key -> (value, when the Redis read that returned it was sent), monotonic.
        self._confirmed: _Lru[str, tuple[int, float]] = _Lru(max_local_buckets * 4)
        self.trusted_reads = 0
        """Reads answered within trust, without a Redis round trip (for metrics, tests)."""
        self.reconfirmations = 0
        """Background reads sent to renew trust windows (for metrics, tests)."""
        self._reconfirming: set[str] = set()
        self._renewals: set[asyncio.Task[None]] = set()
        self._buckets: _Lru[str, Bucket] = _Lru(max_local_buckets)
        # Versions and records last seen in Redis: what the local tier is judged by when it is down.
        self._versions: _Lru[str, int] = _Lru(max_local_buckets * 4)
        self._records: _Lru[str, Any] = _Lru(max_local_buckets)
        self._retry_after = retry_after
        self._down_since: float | None = None
        self._next_try = 0.0
        self._unsent_bumps: dict[str, tuple[int, float]] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Watch Redis while it is unreachable, so that even a replica that gets no
        calls replays its invalidations as soon as Redis answers again."""
        self._watch = asyncio.create_task(self._watch_while_down())

    async def _watch_while_down(self) -> None:
        while True:
            await asyncio.sleep(self._retry_after)
            if self._down_since is not None and self._clock() >= self._next_try:
                await self._replay()

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this replica runs on its local tier."""
        return self._down_since is not None

    @property
    def local_buckets(self) -> int:
        """Buckets held in the local tier now."""
        return len(self._buckets)

    @property
    def local_evictions(self) -> int:
        """Buckets pushed out of the local tier by its bound, since start."""
        return self._buckets.evictions

    async def read(
        self,
        bucket_keys: Sequence[str],
        version_keys: Sequence[str],
        usable: Usable | None = None,
    ) -> tuple[list[Bucket | None], list[int | None]]:
        if usable is not None and self._trust > 0:
            trusted = self._trusted(bucket_keys, version_keys, usable)
            if trusted is not None:
                return trusted
        # With no check to judge them by, local copies must not shadow Redis: a
        # caller polling for another replica's fresh bucket would never see it.
        buckets: list[Bucket | None] = (
            [None] * len(bucket_keys)
            if usable is None
            else [self._buckets.get_recent(k) for k in bucket_keys]
        )
        absent = [i for i, b in enumerate(buckets) if b is None]
        fetched = set(absent)
        sent = self._monotonic()
        shared = await self._try(
            lambda: self._shared.read([bucket_keys[i] for i in absent], version_keys)
        )
        if isinstance(shared, _Down):
            return buckets, [self._versions.get_recent(k) for k in version_keys]
        remote, versions = shared
        self._learned(version_keys, versions, sent)
        for i, bucket in zip(absent, remote, strict=True):
            if bucket is not None:
                buckets[i] = bucket
                self._buckets.put(bucket_keys[i], bucket)
        if usable is not None:
            outdated = [
                i
                for i, bucket in enumerate(buckets)
                if i not in fetched and bucket is not None and not usable(i, bucket, versions)
            ]
            if outdated:
                await self._refresh_local(bucket_keys, outdated, buckets)
        return buckets, versions

    def _trusted(
        self, bucket_keys: Sequence[str], version_keys: Sequence[str], usable: Usable
    ) -> tuple[list[Bucket | None], list[int | None]] | None:
        """The read answered locally, if every version is within trust and every
        bucket is local and usable against them; else None (ask Redis)."""
        now = self._monotonic()
        versions: list[int | None] = []
        oldest = now
        for key in version_keys:
            confirmed = self._confirmed.get(key)
            # sent + trust <= now, not sent <= now - trust: the same sum the wait in
            # bump_versions makes, so a window closes exactly when the wait ends.
            if confirmed is None or confirmed[1] + self._trust <= now:
                return None
            versions.append(confirmed[0])
            oldest = min(oldest, confirmed[1])
        buckets: list[Bucket | None] = []
        for i, key in enumerate(bucket_keys):
            bucket = self._buckets.get_recent(key)
            if bucket is None or not usable(i, bucket, versions):
                return None
            buckets.append(bucket)
        self.trusted_reads += 1
        if now - oldest >= self._trust * RECONFIRM_AFTER:
            self._reconfirm(version_keys)
        return buckets, versions

    def _reconfirm(self, version_keys: Sequence[str]) -> None:
        """Renew the windows of ``version_keys`` in the background (see the module)."""
        keys = [key for key in version_keys if key not in self._reconfirming]
        if not keys or self._down_since is not None:
            return  # already on their way; or Redis is down, and reads find out when it is back
        self._reconfirming.update(keys)
        self.reconfirmations += 1
        renewal = asyncio.create_task(self._confirm_again(keys))
        self._renewals.add(renewal)
        renewal.add_done_callback(self._renewals.discard)

    async def _confirm_again(self, keys: list[str]) -> None:
        try:
            sent = self._monotonic()
            shared = await self._try(lambda: self._shared.read((), keys))
            if not isinstance(shared, _Down):
                self._learned(keys, shared[1], sent)
        finally:
            self._reconfirming.difference_update(keys)

    async def idle(self) -> None:
        """Wait until no renewal is in flight (tests, benchmarks)."""
        while self._renewals:
            await asyncio.gather(*self._renewals, return_exceptions=True)

    def trusted_for(self, version_keys: Sequence[str], versions: Sequence[int]) -> float:
        """What is left of the trust windows of ``versions``: a confirmation counts only if
        it confirmed these very values (a newer one with the same values extends them)."""
        if self._trust <= 0:
            return 0.0
        oldest = math.inf
        for key, value in zip(version_keys, versions, strict=True):
            confirmed = self._confirmed.get(key)
            if confirmed is None or confirmed[0] != value:
                return 0.0
            oldest = min(oldest, confirmed[1])
        return max(0.0, oldest + self._trust - self._monotonic())

    def _learned(self, keys: Sequence[str], values: Sequence[int | None], sent: float) -> None:
        """What a Redis read sent at ``sent`` returned for version ``keys``: remembered (the
        local tier is judged by it if Redis goes down) and confirmed (trust, from ``sent``)."""
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                self._versions.put(key, value)
                self._confirm(key, value, sent)

    def _confirm(self, key: str, value: int, sent: float) -> None:
        known = self._confirmed.get(key)
        # An older read's answer may arrive last: keep the latest-sent confirmation.
        if known is None or known[1] <= sent:
            self._confirmed.put(key, (value, sent))

    async def _refresh_local(
        self, keys: Sequence[str], indexes: list[int], buckets: list[Bucket | None]
    ) -> None:
        fresher = await self._try(lambda: self._shared.read_buckets([keys[i] for i in indexes]))
        if isinstance(fresher, _Down):
            return
        for i, bucket in zip(indexes, fresher, strict=True):
            local = buckets[i]
            if local is not None and bucket is not None and _same(local, bucket):
                continue  # Redis holds the same (expired) bucket: keep ours and its memo
            if bucket is not None:
                buckets[i] = bucket
                self._buckets.put(keys[i], bucket)

    async def write(self, entries: Sequence[tuple[str, Bucket, float]]) -> None:
        for key, bucket, _ in entries:
            self._buckets.put(key, bucket)
        await self._try(lambda: self._shared.write(entries))

    async def seed_versions(self, keys: Sequence[str], seed: int, ttl: float) -> list[int]:
        sent = self._monotonic()
        values = await self._try(lambda: self._shared.seed_versions(keys, seed, ttl))
        if not isinstance(values, _Down):
            self._learned(keys, values, sent)
            return values
        local = [self._versions.get_recent(k) or seed for k in keys]
        for key, value in zip(keys, local, strict=True):
            self._versions.put(key, value)
        return local

    async def bump_versions(self, keys: Sequence[str], seed: int, ttl: float) -> None:
        """Bump in Redis, then wait out ``trust`` from its acknowledgement (see above)."""
        for key in keys:
            known = self._versions.get_recent(key)
            self._versions.put(key, seed if known is None else max(known + 1, seed))
            # This replica knows the bump: its own reads must not trust the old value.
            self._confirmed.pop(key, None)
        done = await self._try(lambda: self._shared.bump_versions(keys, seed, ttl))
        if isinstance(done, _Down):
            for key in keys:
                self._unsent_bumps[key] = (seed, ttl)
        elif self._trust > 0:
            await self._sleep(self._trust)

    async def read_records(self, keys: Sequence[str]) -> list[Any]:
        values = await self._try(lambda: self._shared.read_records(keys))
        if isinstance(values, _Down):
            return [self._records.get_recent(k) for k in keys]
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                self._records.put(key, value)
        return values

    async def write_record(self, key: str, record: Any, ttl: float) -> None:
        self._records.put(key, record)
        await self._try(lambda: self._shared.write_record(key, record, ttl))

    async def lease(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        got = await self._try(lambda: self._shared.lease(keys, token, ttl))
        # Without Redis each replica fetches for itself (its own single-flight still holds).
        return [True] * len(keys) if isinstance(got, _Down) else got

    async def release(self, keys: Sequence[str], token: str) -> None:
        await self._try(lambda: self._shared.release(keys, token))

    async def close(self) -> None:
        for renewal in list(self._renewals):
            renewal.cancel()
        await asyncio.gather(*self._renewals, return_exceptions=True)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._shared.close()

    async def _try(self, call: Callable[[], Awaitable[T]]) -> T | _Down:
        """Run a Redis call, or say Redis is down (and run degraded)."""
        now = self._clock()
        if self._down_since is not None:
            if now < self._next_try:
                return DOWN
            # Replay first: a read must not judge buckets by Redis versions
            # that lack the invalidations this replica took while cut off.
            if not await self._replay():
                return DOWN
        try:
            return await call()
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return DOWN

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            logger.warning("Redis unreachable (%s): serving from the local tier (degraded)", exc)
        self._next_try = now + self._retry_after

    async def _replay(self) -> bool:
        unsent = dict(self._unsent_bumps)
        try:
            for key, (seed, ttl) in unsent.items():
                await self._shared.bump_versions([key], seed, ttl)
                # Replays can overlap (several calls, the watcher) and a newer bump may
                # have been recorded meanwhile: drop only the entry just sent.
                if self._unsent_bumps.get(key) == (seed, ttl):
                    del self._unsent_bumps[key]
            await self._shared.ping()
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return False
        logger.warning(
            "Redis reachable again after %.1f s: replayed %d invalidation(s)",
            self._clock() - (self._down_since or 0.0),
            len(unsent),
        )
        self._down_since = None
        return True


def _same(a: Bucket, b: Bucket) -> bool:
    """Whether two copies are of one fetch. Keeping the local object keeps its memo: the
    encoded slots, and the answers served from it (the suspect hits, should a refresh
    find it changed)."""
    return a.fetched_at == b.fetched_at and a.stamp == b.stamp


class _Down:
    """Redis did not answer."""


DOWN = _Down()
