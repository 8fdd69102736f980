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

Unknown event types are remembered too (negative caching): once Cal.com
answers 404 for an id, from this look-up or from a slots fetch, the id is
answered NOT_FOUND for ``unknown_ttl`` seconds (default 60) without asking
Cal.com again, on every replica sharing the store (the record says so). So
repeating a nonexistent id costs Cal.com one call, not one per ask. An
invalidation naming the id forgets it (the booking service just created it,
say). A caller asking for *many different* unknown ids still costs a call
each: only tokens keep strangers from asking at all.

A look-up is shared by every caller that wants the same event type and runs
with its own bound (``lookup_timeout``), not the first caller's deadline;
each caller waits for it only as long as its own deadline allows. A look-up
that failed is remembered like a failed slots fetch (``failures``): callers
arriving meanwhile share its failure instead of calling again.

A known event type never waits for a look-up on the request path: a record
read in the last :data:`REFRESH_AHEAD` of its TTL is looked up again in the
background (one replica for the cluster, under the same lease), so it is
renewed before it expires. An event type nobody knows is read without its
hosts (:meth:`EventTypeDirectory.known_hosts` answers None): the cache then
fetches its slots while the look-up runs (see :mod:`availability.core.cache`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from availability.core.clock import Clock
from availability.core.failures import FailureMemory
from availability.core.keys import KeySchema
from availability.core.leases import lease_token, polls
from availability.core.local_days import DAY
from availability.core.ports import (
    CacheStore,
    EventTypeInfo,
    EventTypeNotFound,
    Upstream,
    UpstreamAuthError,
    UpstreamUnavailable,
)

__all__ = ["REFRESH_AHEAD", "EventTypeDirectory"]

logger = logging.getLogger(__name__)

REFRESH_AHEAD = 0.1
"""Share of a host record's TTL before its end in which a read renews it in the background."""


@dataclass(frozen=True, slots=True)
class _Entry:
    hosts: tuple[int, ...]
    fetched_at: float
    unknown: bool = False
    """Cal.com answered 404: no such event type (a negative entry)."""

    def record(self) -> dict[str, Any]:
        if self.unknown:
            return {"unknown": True, "fetched_at": self.fetched_at}
        return {"hosts": list(self.hosts), "fetched_at": self.fetched_at}


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
        unknown_ttl: float = 60.0,
        lookup_timeout: float = 10.0,
        failures: FailureMemory | None = None,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._clock = clock
        self._keys = keys
        self._ttl = ttl
        self._max_stale = max_stale
        self._lease_ttl = lease_ttl
        self._unknown_ttl = unknown_ttl
        self._lookup_timeout = lookup_timeout
        self._failures = failures or FailureMemory(clock=clock)
        self._local: dict[int, _Entry] = {}
        self._lookups: dict[int, asyncio.Task[tuple[int, ...]]] = {}
        self._warned_auth = False

    async def hosts(self, event_type_id: int, *, wait: float) -> tuple[int, ...]:
        """The event type's host ids, ascending; empty when Cal.com will not say.

        Waits at most ``wait`` seconds for a look-up (which goes on for whoever
        asks next). Raises :class:`~availability.core.ports.EventTypeNotFound` for
        an unknown event type and :class:`UpstreamUnavailable` when nothing usable
        is known in time.
        """
        entry = self._local.get(event_type_id)
        if entry is not None and self._fresh(entry, self._clock()):
            if entry.unknown:
                raise _not_found(event_type_id)
            self._renew_if_due(event_type_id, entry)
            return entry.hosts
        lookup = self._lookups.get(event_type_id)
        if lookup is None:
            remembered = self._failures.recall(_failure_key(event_type_id))
            if remembered is not None:
                fallback = self._usable_fallback(entry)
                if fallback is not None:
                    return fallback.hosts
                raise remembered
            lookup = self._start_lookup(event_type_id, entry, ahead=False)
        try:
            return await asyncio.wait_for(asyncio.shield(lookup), wait)
        except TimeoutError:
            fallback = self._usable_fallback(entry)
            if fallback is not None:
                return fallback.hosts
            raise UpstreamUnavailable(
                f"Cal.com did not tell the hosts of event type {event_type_id} within {wait:.1f} s"
            ) from None

    async def known_hosts(self, event_type_id: int, *, wait: float) -> tuple[int, ...] | None:
        """The hosts if this process or the store knows them (as :meth:`hosts`); None when
        only a Cal.com look-up could tell (never seen, or the record expired with no
        usable fallback): the caller then reads without them and starts :meth:`hosts`
        alongside its slots fetch. Raises like :meth:`hosts`."""
        entry = self._local.get(event_type_id)
        if entry is not None and (
            self._fresh(entry, self._clock()) or self._usable_fallback(entry) is not None
        ):
            return await self.hosts(event_type_id, wait=wait)
        [record] = await self._store.read_records([self._keys.event_type_record(event_type_id)])
        stored = _entry_from(record)
        if stored is not None and self._fresh(stored, self._clock()):
            hosts = self._adopt(event_type_id, stored)
            self._renew_if_due(event_type_id, stored)
            return hosts
        return None

    def _start_lookup(
        self, event_type_id: int, entry: _Entry | None, *, ahead: bool
    ) -> asyncio.Task[tuple[int, ...]]:
        # A task, not the caller's own await: a caller that gives up must
        # not cancel the lookup others are waiting for.
        lookup = asyncio.create_task(self._refresh(event_type_id, entry, ahead=ahead))
        self._lookups[event_type_id] = lookup
        lookup.add_done_callback(lambda done: self._finished(event_type_id, done))
        return lookup

    def _renew_if_due(self, event_type_id: int, entry: _Entry) -> None:
        """Look a fresh record up again in the background in the last part of its TTL."""
        if (
            self._clock() >= entry.fetched_at + self._ttl * (1 - REFRESH_AHEAD)
            and event_type_id not in self._lookups
            and self._failures.recall(_failure_key(event_type_id)) is None
        ):
            self._start_lookup(event_type_id, entry, ahead=True)

    def fresh_until(self, event_type_id: int) -> float:
        """Until when the hosts this process knows for the event type are fresh (-inf: not)."""
        entry = self._local.get(event_type_id)
        if entry is None or entry.unknown:
            return -math.inf
        return entry.fetched_at + self._ttl

    def _fresh(self, entry: _Entry, now: float, *, ahead: bool = False) -> bool:
        """Within its TTL at ``now``; with ``ahead``, also outside the renewal window."""
        if entry.unknown:
            return now < entry.fetched_at + self._unknown_ttl
        margin = self._ttl * REFRESH_AHEAD if ahead else 0.0
        return now < entry.fetched_at + self._ttl - margin

    def _usable_fallback(self, entry: _Entry | None) -> _Entry | None:
        """A known entry past its TTL but within ``max_stale``: better than nothing."""
        if entry is None or entry.unknown:
            return None
        return entry if self._clock() < entry.fetched_at + self._ttl + self._max_stale else None

    def _finished(self, event_type_id: int, lookup: asyncio.Task[tuple[int, ...]]) -> None:
        if self._lookups.get(event_type_id) is lookup:
            del self._lookups[event_type_id]
        if not lookup.cancelled():
            lookup.exception()  # seen: whoever still waits gets it from the shield

    def sharing(self, host_ids: Iterable[int]) -> list[int]:
        """Event types known to this process that share a host with ``host_ids``."""
        wanted = set(host_ids)
        return sorted(
            et
            for et, entry in self._local.items()
            if not entry.unknown and wanted.intersection(entry.hosts)
        )

    async def mark_unknown(self, event_type_id: int) -> None:
        """Cal.com answered 404 for this id (e.g. to a slots fetch): remember it."""
        await self._remember(event_type_id, _Entry((), self._clock(), unknown=True))

    async def forget_unknown(self, event_type_id: int) -> None:
        """Drop a negative entry for this id, here and in the store (an invalidation
        names it: it may exist now)."""
        entry = self._local.get(event_type_id)
        if entry is not None and entry.unknown:
            del self._local[event_type_id]
        key = self._keys.event_type_record(event_type_id)
        [record] = await self._store.read_records([key])
        stored = _entry_from(record)
        if stored is not None and stored.unknown:
            # The port has no delete: a record that parses as nothing reads as absent.
            await self._store.write_record(key, {"forgotten": True}, self._unknown_ttl)

    @property
    def lookups(self) -> tuple[asyncio.Task[tuple[int, ...]], ...]:
        """The look-ups in the air (renewals included)."""
        return tuple(self._lookups.values())

    async def close(self) -> None:
        """Cancel look-ups nobody waits for any more (shutdown)."""
        lookups = list(self._lookups.values())
        for lookup in lookups:
            lookup.cancel()
        await asyncio.gather(*lookups, return_exceptions=True)

    async def _refresh(
        self, event_type_id: int, entry: _Entry | None, *, ahead: bool
    ) -> tuple[int, ...]:
        """Adopt the store's record or look the event type up; ``ahead``: renewing a
        record that is still fresh, so one that is due for renewal does not count."""
        key = self._keys.event_type_record(event_type_id)
        [record] = await self._store.read_records([key])
        stored = _entry_from(record)
        now = self._clock()
        if stored is not None and self._fresh(stored, now, ahead=ahead):
            return self._adopt(event_type_id, stored)
        fallback = max(
            (e for e in (entry, stored) if e is not None and not e.unknown),
            key=lambda e: e.fetched_at,
            default=None,
        )
        # One replica looks it up for the cluster (the budget is shared); the others
        # wait for its record, bounded, and look it up themselves if none appears.
        lease = self._keys.event_type_lease(event_type_id)
        token = lease_token()
        [mine] = await self._store.lease([lease], token, self._lease_ttl)
        try:
            if not mine:
                shared = await self._await_record(key, lease, ahead=ahead)
                if shared is not None:
                    return self._adopt(event_type_id, shared)
            return await self._look_up(event_type_id, fallback)
        finally:
            if mine:
                await self._store.release([lease], token)

    def _adopt(self, event_type_id: int, entry: _Entry) -> tuple[int, ...]:
        self._local[event_type_id] = entry
        if entry.unknown:
            raise _not_found(event_type_id)
        return entry.hosts

    async def _await_record(self, key: str, lease: str, *, ahead: bool) -> _Entry | None:
        """Another replica's look-up result, or None when its lease went without one."""
        async for _ in polls(self._lease_ttl):
            [record] = await self._store.read_records([key])
            stored = _entry_from(record)
            if stored is not None and self._fresh(stored, self._clock(), ahead=ahead):
                return stored
            _, [holder] = await self._store.read([], [lease])
            if holder is None:
                return None
        return None

    async def _look_up(self, event_type_id: int, fallback: _Entry | None) -> tuple[int, ...]:
        now = self._clock()
        try:
            info = await self._upstream.fetch_event_type(
                event_type_id, timeout=self._lookup_timeout
            )
        except UpstreamAuthError:
            if not self._warned_auth:
                self._warned_auth = True
                logger.warning(
                    "Cal.com refused the event-type lookup (set AVAILABILITY_CALCOM_API_KEY): "
                    "bookings invalidate only their own event type, not the host's others"
                )
            info = EventTypeInfo(event_type_id, frozenset())
        except EventTypeNotFound:
            await self._remember(event_type_id, _Entry((), now, unknown=True))
            raise
        except UpstreamUnavailable as exc:
            self._failures.remember(_failure_key(event_type_id), exc)
            if fallback is not None and now < fallback.fetched_at + self._ttl + self._max_stale:
                return fallback.hosts
            raise
        fresh = _Entry(tuple(sorted(info.host_ids)), now)
        await self._remember(event_type_id, fresh)
        return fresh.hosts

    async def _remember(self, event_type_id: int, entry: _Entry) -> None:
        self._local[event_type_id] = entry
        ttl = self._unknown_ttl if entry.unknown else self._ttl + self._max_stale
        await self._store.write_record(
            self._keys.event_type_record(event_type_id), entry.record(), ttl
        )


def _failure_key(event_type_id: int) -> tuple[str, int]:
    """Look-up failures share the cache's memory under keys no bucket has."""
    return ("event type", event_type_id)


def _not_found(event_type_id: int) -> EventTypeNotFound:
    return EventTypeNotFound(f"Cal.com does not know event type {event_type_id}")


def _entry_from(record: Any) -> _Entry | None:
    if not isinstance(record, dict):
        return None
    try:
        if record.get("unknown") is True:
            return _Entry((), float(record["fetched_at"]), unknown=True)
        return _Entry(tuple(int(h) for h in record["hosts"]), float(record["fetched_at"]))
    except (KeyError, TypeError, ValueError):
        return None
