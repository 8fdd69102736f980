"""Which hosts an event type belongs to: the scope of a booking's invalidation.

A booking blocks its hosts' time in every event type they host, so buckets
are stamped with per-host versions, and the read path must know an event
type's hosts before it can judge a bucket. Hosts change rarely: they are
looked up once (``GET /v2/event-types/{id}``), kept in the store for all
replicas and in this process for ``ttl`` seconds, and served past that for up
to ``max_stale`` seconds while Cal.com is unavailable.

Cal.com's event-type endpoint needs an API key. Without one (401/403) the
hosts are unknown: the event type is then cached under its own versions only,
and host-wide invalidation cannot reach it; a warning says so once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from availability.core.clock import Clock
from availability.core.keys import KeySchema
from availability.core.leases import lease_token, polls
from availability.core.local_days import DAY
from availability.core.ports import (
    CacheStore,
    EventTypeInfo,
    Upstream,
    UpstreamAuthError,
    UpstreamUnavailable,
)

__all__ = ["EventTypeDirectory"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    hosts: tuple[int, ...]
    fetched_at: float


class EventTypeDirectory:
    def __init__(
        self,
        upstream: Upstream,
        store: CacheStore,
        *,
        clock: Clock,
        keys: KeySchema,
        ttl: float = 3600.0,
        max_stale: float = DAY,
        lease_ttl: float = 10.0,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._clock = clock
        self._keys = keys
        self._ttl = ttl
        self._max_stale = max_stale
        self._lease_ttl = lease_ttl
        self._local: dict[int, _Entry] = {}
        self._lookups: dict[int, asyncio.Task[tuple[int, ...]]] = {}
        self._warned_auth = False

    async def hosts(self, event_type_id: int, *, timeout: float | None = None) -> tuple[int, ...]:
        """The event type's host ids, ascending; empty when Cal.com will not say.

        Raises :class:`~availability.core.ports.EventTypeNotFound` for an unknown
        event type and :class:`UpstreamUnavailable` when nothing usable is known.
        """
        entry = self._local.get(event_type_id)
        if entry is not None and self._clock() < entry.fetched_at + self._ttl:
            return entry.hosts
        lookup = self._lookups.get(event_type_id)
        if lookup is None:
            # A task, not the caller's own await: a caller that gives up must
            # not cancel the lookup others are waiting for.
            lookup = asyncio.create_task(self._refresh(event_type_id, entry, timeout))
            self._lookups[event_type_id] = lookup
            lookup.add_done_callback(lambda done: self._finished(event_type_id, done))
        return await asyncio.shield(lookup)

    def _finished(self, event_type_id: int, lookup: asyncio.Task[tuple[int, ...]]) -> None:
        if self._lookups.get(event_type_id) is lookup:
            del self._lookups[event_type_id]
        if not lookup.cancelled():
            lookup.exception()  # seen: whoever still waits gets it from the shield

    def sharing(self, host_ids: Iterable[int]) -> list[int]:
        """Event types known to this process that share a host with ``host_ids``."""
        wanted = set(host_ids)
        return sorted(et for et, entry in self._local.items() if wanted.intersection(entry.hosts))

    async def _refresh(
        self, event_type_id: int, entry: _Entry | None, timeout: float | None
    ) -> tuple[int, ...]:
        key = self._keys.event_type_record(event_type_id)
        [record] = await self._store.read_records([key])
        stored = _entry_from(record)
        now = self._clock()
        if stored is not None and now < stored.fetched_at + self._ttl:
            self._local[event_type_id] = stored
            return stored.hosts
        fallback = max(
            (e for e in (entry, stored) if e is not None), key=lambda e: e.fetched_at, default=None
        )
        # One replica looks it up for the cluster (the budget is shared); the others
        # wait for its record, bounded, and look it up themselves if none appears.
        lease = self._keys.event_type_lease(event_type_id)
        token = lease_token()
        [mine] = await self._store.lease([lease], token, self._lease_ttl)
        try:
            if not mine:
                shared = await self._await_record(key, lease, timeout)
                if shared is not None:
                    self._local[event_type_id] = shared
                    return shared.hosts
            return await self._look_up(event_type_id, key, fallback, timeout)
        finally:
            if mine:
                await self._store.release([lease], token)

    async def _await_record(self, key: str, lease: str, timeout: float | None) -> _Entry | None:
        """Another replica's look-up result, or None when its lease went without one."""
        async for _ in polls(self._lease_ttl if timeout is None else min(timeout, self._lease_ttl)):
            [record] = await self._store.read_records([key])
            stored = _entry_from(record)
            if stored is not None and self._clock() < stored.fetched_at + self._ttl:
                return stored
            _, [holder] = await self._store.read([], [lease])
            if holder is None:
                return None
        return None

    async def _look_up(
        self, event_type_id: int, key: str, fallback: _Entry | None, timeout: float | None
    ) -> tuple[int, ...]:
        now = self._clock()
        try:
            info = await self._upstream.fetch_event_type(event_type_id, timeout=timeout)
        except UpstreamAuthError:
            if not self._warned_auth:
                self._warned_auth = True
                logger.warning(
                    "Cal.com refused the event-type lookup (set AVAILABILITY_CALCOM_API_KEY): "
                    "bookings invalidate only their own event type, not the host's others"
                )
            info = EventTypeInfo(event_type_id, frozenset())
        except UpstreamUnavailable:
            if fallback is not None and now < fallback.fetched_at + self._ttl + self._max_stale:
                return fallback.hosts
            raise
        fresh = _Entry(tuple(sorted(info.host_ids)), now)
        self._local[event_type_id] = fresh
        await self._store.write_record(
            key,
            {"hosts": list(fresh.hosts), "fetched_at": fresh.fetched_at},
            self._ttl + self._max_stale,
        )
        return fresh.hosts


def _entry_from(record: Any) -> _Entry | None:
    if not isinstance(record, dict):
        return None
    try:
        return _Entry(tuple(int(h) for h in record["hosts"]), float(record["fetched_at"]))
    except (KeyError, TypeError, ValueError):
        return None
