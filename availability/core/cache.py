"""The slot cache: the core every transport drives.

Reading ``[start, end)`` of an event type:

1. Map the range (minus what has already started) onto UTC day buckets and
   read the buckets together with the versions that cover them.
2. A bucket is used when its stamp equals the current sum of its versions
   and its tier TTL has not run out on the injected clock.
3. Missing days join an in-flight fetch for the same bucket *and the same
   stamp*, or are fetched, each run of adjacent days in one upstream call.
   A fetch stamps its buckets with the versions read before it began, so an
   invalidation that lands while it is in flight makes its result invalid
   for every later reader, and no later reader can join it.
4. Slots are filtered to ``[max(start, now), end)`` and regrouped by local
   date in the caller's time zone.

One Cal.com round trip per cold read. A bucket's stamp covers its hosts'
versions, so judging or stamping needs the hosts, which only Cal.com's
event-type look-up tells. When nobody knows them (never seen, or the record
expired with no usable fallback), the slots fetch does not wait for the
look-up; the look-up follows it, off the reader's path:

- The fetch is stamped with the versions known before it began (everything,
  the event type, its days: the *pre-stamp*) and takes its start ``t0``. Only
  readers that do not know the hosts either join it (its flights are keyed
  apart); they cannot judge stored buckets, and a cold event type has none
  anyway. Across replicas it is leased under (bucket key, pre-stamp) like any
  fetch; a replica that finds the lease held waits until it goes, then reads
  again: by then the hosts' record and the bucket are in the store.
- The reader that began the fetch is answered as soon as the slots are in:
  its read began before ``t0``, so Cal.com's answer, given after ``t0``,
  contains every booking whose invalidation returned before that read began,
  whoever the hosts are. Nothing else about it is trusted (its answer is not
  reused by a transport). Only after a successful answer are the hosts looked
  up: a 404 for the event type costs Cal.com one call, not two.
- A reader that joined the fetch later, or that knows the hosts (it learnt
  them from that look-up) and has nothing to serve for a day, waits for the
  stamping below, here or (through the lease) on another replica, and then
  reads again, instead of seeding the hosts' versions or fetching itself: its
  seed would look like an invalidation to the fetch and cost a second call.
- Once the hosts are known, their versions (host and host-day keys of the
  fetched days) are read. A bump sets a version to ``max(v + 1, seed)``, the
  seed being the bumper's clock in microseconds, so a version tells when it
  was last bumped. If each one is missing (no bump recorded: it is seeded now,
  with our own seed) or below ``t0 - SKEW_MARGIN``, no invalidation of these
  hosts landed after the fetch began, so Cal.com's answer already contains
  every booking they stand for, and the stamp "pre-fetch versions + these
  host versions" is exactly the stamp a reader knowing the hosts would have
  taken before fetching. The bucket is stored and served under it.
- Otherwise a host was invalidated while the fetch was in flight (rare): its
  answer may predate the booking, so it is neither stored nor served to the
  later readers; the days are fetched again under the full stamp, and they
  wait one more round trip. A seed someone else wrote meanwhile (a reader of
  another event type of the same host, say) looks the same and costs the
  same: safe, rare. If the look-up fails, nothing is stored (nothing could
  judge it later) and the later readers are told UNAVAILABLE: none of them
  could be shown to have begun before an invalidation of a host.

Known hosts never cost a look-up on the request path: host records are
renewed in the background before they expire (:mod:`availability.core.event_types`).

Invalidation bumps versions instead of deleting keys: a delete loses to a
fetch that began before it and writes afterwards; a bumped version does not.

When Cal.com misbehaves (RFC 5861's stale-while-revalidate and
stale-if-error, bounded):

- Every read answers by its deadline (:mod:`availability.core.deadlines`):
  the caller's remaining time minus a reserve. A shared fetch runs with its
  own bound (``fetch_timeout``), never the first caller's deadline, and each
  caller waits for it only as long as its own deadline allows; the fetch goes
  on in the background so the next caller gets its bucket.
- A bucket past its TTL but not invalidated, within ``max_stale``, is served
  marked stale when its refresh fails or would not finish in time. A caller
  holding such a fallback waits for the refresh at most ``stale_wait``
  seconds after the refresh began (one voice turn), and not at all when the
  refresh already failed (breaker open, remembered failure). An invalidated
  bucket is never served.
- A failed fetch of a bucket is remembered for ``failure_memory`` seconds
  (:mod:`availability.core.failures`): callers meanwhile share the failure (or
  their stale bucket) instead of calling Cal.com again.
- A 404 makes the event type unknown for a while (negative caching, in
  :mod:`availability.core.event_types`).
- Load shedding: while ``max_pending_misses`` reads already wait for Cal.com,
  a new miss is refused at once with :class:`Overloaded` (its stale bucket is
  served if it has one), so the RPCs that remain serve hits.

An optional :class:`~availability.core.observe.CacheObserver` hears how each
bucket was had, every answer, and what re-fetching a bucket still believed
current found (measured staleness; see :mod:`availability.core.observe`).

This module imports no transport: it is driven by the gRPC servicer, the
webhook endpoint and tests alike, and reads time only from its clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta, tzinfo
from zoneinfo import ZoneInfo

from availability.core.buckets import Bucket
from availability.core.clock import Clock
from availability.core.deadlines import Deadline, DeadlinePolicy
from availability.core.event_types import EventTypeDirectory
from availability.core.failures import FailureMemory
from availability.core.keys import KeySchema
from availability.core.leases import lease_token, polls
from availability.core.local_days import DAY, LocalDay, SlotRun, group_by_local_date, utc_days
from availability.core.observe import NO_OBSERVER, CacheObserver, LookupResult
from availability.core.ports import (
    BudgetExhausted,
    CacheStore,
    EventTypeNotFound,
    Overloaded,
    Priority,
    Upstream,
    UpstreamError,
    UpstreamUnavailable,
)
from availability.core.slots import Slot
from availability.core.ttl import TieredTtl, TtlPolicy
from availability.core.versions import (
    StampCheck,
    VersionLayout,
    VersionSeed,
    current_versions,
    version_layout,
)
from availability.core.windows import FetchWindows

__all__ = [
    "Freshness",
    "Invalidation",
    "InvalidationScope",
    "SlotCache",
    "SlotsAnswer",
    "SlotsQuery",
    "Source",
]

logger = logging.getLogger(__name__)

_UTC = ZoneInfo("UTC")

SKEW_MARGIN = 1.0
"""Seconds by which replicas' clocks may disagree. A host version is taken as bumped
before a fetch began only if it is below the fetch's start minus this margin (see the
module docstring): a bumper whose clock runs behind still seeds above that line."""


class _ReadAgain(UpstreamUnavailable):
    """Another replica fetched these days without their hosts: the reader reads again
    (once; a second time it is plain unavailability, which callers may retry)."""


class Source(enum.Enum):
    NONE = "none"
    """No bucket was needed: the whole range lies in the past."""
    CACHE = "cache"
    UPSTREAM = "upstream"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class SlotsQuery:
    event_type_id: int
    start: float
    """Inclusive lower bound on slot starts, epoch seconds."""
    end: float
    """Exclusive upper bound on slot starts, epoch seconds."""
    time_zone: tzinfo = _UTC
    duration_minutes: int = 0
    fresh: bool = False
    """Skip the cache read and fetch (the booking path's final check)."""


@dataclass(frozen=True, slots=True)
class Freshness:
    """Where an answer came from: STALE if any bucket was stale, else UPSTREAM if any was
    fetched for it, else CACHE; ``fetched_at`` and ``age`` of the oldest bucket used."""

    source: Source
    fetched_at: float | None
    age: float


@dataclass(frozen=True, slots=True)
class SlotsAnswer:
    days: list[LocalDay]
    freshness: Freshness
    valid_until: float = -math.inf
    """The same query would get these days back until this instant (clock seconds),
    unless :attr:`SlotCache.generation` moves first (an invalidation) or
    ``trusted_for`` runs out: what lets a transport reuse its encoding of a cache
    answer without asking the core."""
    buckets: tuple[Bucket, ...] = ()
    """The day buckets the answer was read from (a reuse counts as hits on them)."""
    trusted_for: float = 0.0
    """Seconds (from before the read began, on a monotonic clock) for which no other
    replica's invalidation can have returned without this answer's versions showing it
    (``inf`` on one process's memory; see :meth:`CacheStore.trusted_for`)."""


@dataclass(frozen=True, slots=True)
class InvalidationScope:
    """What changed. The parts add up; at least one must be set."""

    event_type_id: int | None = None
    """An event type whose bookings changed: its hosts' event types are all affected."""
    host_ids: tuple[int, ...] = ()
    everything: bool = False
    start: float | None = None
    """With ``end``: the changed range ``[start, end)``; without: every day."""
    end: float | None = None


@dataclass(frozen=True, slots=True)
class Invalidation:
    event_type_ids: tuple[int, ...]
    """Event types known to this process whose buckets were invalidated."""
    host_ids: tuple[int, ...]
    dates: tuple[date, ...]
    """UTC days invalidated; empty when ``all_dates``."""
    all_dates: bool
    everything: bool = False


@dataclass(frozen=True, slots=True)
class _Need:
    """One bucket a read must fetch or join."""

    day: date
    key: str
    stamp: int
    previous: Bucket | None = field(default=None, compare=False)
    """The cached bucket with the same stamp this fetch replaces (expired, or skipped by
    a fresh read): its fetcher compares the two (measured staleness)."""
    early: asyncio.Future[Bucket] | None = field(default=None, compare=False)
    """A fetch begun without hosts: the future of the reader that began it, answered as
    soon as Cal.com's slots are in (module docstring), before the shared one."""


@dataclass(slots=True)
class _Used:
    bucket: Bucket
    source: Source


@dataclass(frozen=True, slots=True)
class _Flight:
    """One bucket's fetch in the air, as a reader waits for it."""

    future: asyncio.Future[Bucket]
    started: float
    """When the fetch began, on :func:`time.monotonic` (bounds a stale holder's wait)."""


_FlightKey = tuple[str, int, bool]
"""(bucket key, stamp, hosts unknown): a fetch stamped without its hosts' versions is
joined only by readers that do not know them either."""


@dataclass
class _Flights:
    """In-flight fetches by :data:`_FlightKey`; one per bucket and stamp."""

    by_key: dict[_FlightKey, _Flight] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class SlotCache:
    def __init__(
        self,
        upstream: Upstream,
        store: CacheStore,
        *,
        clock: Clock,
        ttl: TtlPolicy | None = None,
        max_stale: float = 300.0,
        keys: KeySchema | None = None,
        version_ttl: float = 7 * DAY,
        max_invalidation_days: int = 400,
        event_type_ttl: float = 3600.0,
        lease_ttl: float = 10.0,
        fetch_timeout: float = 10.0,
        deadlines: DeadlinePolicy | None = None,
        stale_wait: float = 1.0,
        failure_memory: float = 1.0,
        unknown_event_type_ttl: float = 60.0,
        max_pending_misses: int = 250,
        observer: CacheObserver = NO_OBSERVER,
        windows: FetchWindows | None = None,
        refresh_ahead: float = 0.0,
    ) -> None:
        """``windows``: fetch whole windows on a miss (:mod:`availability.core.windows`;
        None: only the days read). ``refresh_ahead``: the last share of a bucket's TTL in
        which a read refreshes it (and its window) in the background, on the budget's
        background share (0: buckets simply expire)."""
        if not 0.0 <= refresh_ahead < 1.0:
            raise ValueError("refresh_ahead must be in [0, 1)")
        self._upstream = upstream
        self._store = store
        self._clock = clock
        self._ttl: TtlPolicy = ttl or TieredTtl()
        self._max_stale = max_stale
        self._keys = keys or KeySchema()
        self._version_ttl = version_ttl
        self._max_invalidation_days = max_invalidation_days
        self._flights = _Flights()
        self._lease_ttl = lease_ttl
        self._fetch_timeout = fetch_timeout
        self._deadlines = deadlines or DeadlinePolicy()
        self._stale_wait = stale_wait
        self._failures = FailureMemory(clock=clock, ttl=failure_memory)
        self._max_pending_misses = max_pending_misses
        self._pending_misses = 0
        self._windows = windows
        self._refresh_ahead = refresh_ahead
        self._refreshing: set[tuple[int, int, date]] = set()
        """(event type, duration, first day) of each refresh ahead in the air."""
        self.refreshes_ahead = 0
        """Background refreshes begun for buckets read shortly before they expire (metrics)."""
        self.shed = 0
        """Misses refused at once because too many were waiting for Cal.com (for metrics)."""
        self.generation = 0
        """Bumped by every invalidation once it is in the store, and by every fresh read
        once it has stored what it fetched (it replaces buckets still valid). A transport
        that keeps an answer keeps the generation read before asking for it, and drops the
        answer when the generation has moved (see :attr:`SlotsAnswer.valid_until`)."""
        self._observer = observer
        # Counting answers per bucket (for suspect hits) is the one per-bucket cost of
        # observing: skipped when nobody listens.
        self._count_served = observer is not NO_OBSERVER
        self._seed = VersionSeed(clock)
        self._directory = EventTypeDirectory(
            upstream,
            store,
            clock=clock,
            keys=self._keys,
            ttl=event_type_ttl,
            lease_ttl=lease_ttl,
            unknown_ttl=unknown_event_type_ttl,
            lookup_timeout=fetch_timeout,
            failures=self._failures,
        )

    @property
    def pending_misses(self) -> int:
        """Reads waiting for Cal.com right now (for metrics)."""
        return self._pending_misses

    async def get_slots(self, query: SlotsQuery, *, timeout: float | None = None) -> SlotsAnswer:
        """Slots of ``query``; raises :class:`UpstreamError` when they cannot be had.

        ``timeout`` is the caller's remaining time in seconds (None: it set no
        deadline); the answer comes before it, minus the reserve (see
        :class:`~availability.core.deadlines.DeadlinePolicy`).
        """
        deadline = self._deadlines.start(timeout)
        now = self._clock()
        lo = max(query.start, now)
        if lo >= query.end:
            self._observer.answered(Source.NONE, 0.0)
            return SlotsAnswer([], Freshness(Source.NONE, None, 0.0))
        days = utc_days(lo, query.end)
        used, trusted_for = await self._buckets_for(query, days, deadline)
        runs = []
        for entry in used:
            first = entry.bucket.index_at(lo)
            runs.append(SlotRun(entry.bucket, first, entry.bucket.index_at(query.end, first)))
        oldest = min(used, key=lambda u: u.bucket.fetched_at)
        sources = {u.source for u in used}
        source = next(s for s in (Source.STALE, Source.UPSTREAM, Source.CACHE) if s in sources)
        fetched_at = oldest.bucket.fetched_at
        freshness = Freshness(source, fetched_at, max(0.0, now - fetched_at))
        self._observer.answered(source, freshness.age)
        return SlotsAnswer(
            group_by_local_date(runs, query.time_zone),
            freshness,
            self._valid_until(query, now, used, runs),
            tuple(u.bucket for u in used),
            trusted_for,
        )

    def _valid_until(
        self, query: SlotsQuery, now: float, used: list[_Used], runs: list[SlotRun]
    ) -> float:
        """Until when this read, repeated, would give the same answer, barring invalidations.

        The earliest of: any bucket it used expires (empty ones too); its first
        slot starts (the started-slot filter would drop it); the next UTC
        midnight (the days read change); the range ends; the event type's
        host record expires (its hosts, hence its versions, may change).
        """
        ahead = self._refresh_ahead
        until = min(
            # A read past the refresh point must take the normal path: it starts the refresh.
            *(
                u.bucket.expires_at - ahead * (u.bucket.expires_at - u.bucket.fetched_at)
                for u in used
            ),
            (now // DAY + 1) * DAY,
            query.end,
            self._directory.fresh_until(query.event_type_id),
        )
        first = next((r for r in runs if r.first < r.last), None)
        if first is not None:
            until = min(until, first.bucket.starts[first.first])
        return until

    def reused(self, buckets: tuple[Bucket, ...], age: float) -> None:
        """A transport answered a repeat of a cache answer (read from ``buckets``) itself
        (see ``valid_until``): counted as the hits and the answer it is."""
        self._observer.lookups("hit", len(buckets))
        if self._count_served:
            for bucket in buckets:
                bucket.served += 1
        self._observer.answered(Source.CACHE, age)

    async def invalidate(
        self, scope: InvalidationScope, *, timeout: float | None = None
    ) -> Invalidation:
        """Make every bucket ``scope`` can change invalid, on every replica sharing the store.

        Days that ended more than a day ago are skipped (nothing reads them);
        a range wider than ``max_invalidation_days`` invalidates every day.
        An event type Cal.com did not know is looked up again (it may exist
        now). Raises :class:`UpstreamError` when an event type's hosts cannot be
        learned within ``timeout`` (the caller's remaining time); what could be
        invalidated was, and retrying is safe.
        """
        deadline = self._deadlines.start(timeout)
        if scope.everything:
            await self._bump([self._keys.everything_version()])
            logger.debug("invalidated everything")
            return Invalidation((), (), (), all_dates=True, everything=True)
        hosts = set(scope.host_ids)
        event_types: set[int] = set()
        lookup_error: UpstreamError | None = None
        if scope.event_type_id is not None:
            event_types.add(scope.event_type_id)
            await self._directory.forget_unknown(scope.event_type_id)
            try:
                hosts.update(
                    await self._directory.hosts(scope.event_type_id, wait=deadline.remaining())
                )
            except EventTypeNotFound:
                pass  # Cal.com has no such event type: its own versions are all there is
            except UpstreamError as exc:
                lookup_error = exc
        event_types.update(self._directory.sharing(hosts))
        days = self._invalidation_days(scope.start, scope.end)
        keys: list[str] = []
        if days is None:
            if scope.event_type_id is not None:
                keys.append(self._keys.event_type_version(scope.event_type_id))
            keys.extend(self._keys.host_version(h) for h in sorted(hosts))
        else:
            for day in days:
                if scope.event_type_id is not None:
                    keys.append(self._keys.day_version(scope.event_type_id, day))
                keys.extend(self._keys.host_day_version(h, day) for h in sorted(hosts))
        await self._bump(keys)
        logger.debug("invalidated %d version(s) for event types %s", len(keys), event_types)
        if lookup_error is not None:
            raise lookup_error
        return Invalidation(
            tuple(sorted(event_types)),
            tuple(sorted(hosts)),
            () if days is None else tuple(days),
            all_dates=days is None,
        )

    def _invalidation_days(self, start: float | None, end: float | None) -> list[date] | None:
        """The UTC days to invalidate; None for every day."""
        if start is None or end is None:
            return None
        lo = max(start, self._clock() - DAY)
        if lo >= end:
            return []
        if end - lo > self._max_invalidation_days * DAY:
            return None  # checked before listing days: a range may reach year 9999
        return utc_days(lo, end)

    async def _bump(self, keys: Sequence[str]) -> None:
        try:
            if keys:
                await self._store.bump_versions(keys, self._seed(), self._version_ttl)
        finally:
            # After the store has the bump (or failed to take it): whatever a reader
            # remembered from an answer begun before this moment is now void.
            self.generation += 1

    async def idle(self) -> None:
        """Return once no fetch and no host look-up is in the air.

        What a read leaves behind it (the stamping of a fetch begun without
        hosts, a fetch that outlived its caller's deadline, a renewal) runs on;
        a test's next step, or a drain, waits for it here instead of sleeping.
        """
        while pending := (*self._flights.tasks, *self._directory.lookups):
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Cancel fetches nobody waits for any more (shutdown)."""
        tasks = list(self._flights.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._directory.close()

    # -- reading -------------------------------------------------------------

    async def _buckets_for(
        self, query: SlotsQuery, days: list[date], deadline: Deadline, *, again: bool = False
    ) -> tuple[list[_Used], float]:
        """The buckets of ``days`` and how long their versions stay trusted (see
        :meth:`CacheStore.trusted_for`). ``again``: this read follows a wait for a fetch
        begun without hosts; it does not wait for another one (so a read waits for at
        most one)."""
        et, duration = query.event_type_id, query.duration_minutes
        hosts = await self._directory.known_hosts(et, wait=deadline.remaining())
        if hosts is None:
            return await self._read_hosts_unknown(query, days, deadline, again=again)
        layout = self._versions(et, hosts, days)
        bucket_keys = _bucket_keys(self._keys, et, duration, days[0], len(days))
        now = self._clock()
        # A fresh read serves no cached bucket, but reads them to compare with what it
        # fetches (measured staleness); fresh reads are rare.
        buckets, versions = await self._store.read(
            bucket_keys, layout.keys, StampCheck(layout, now)
        )
        known = [v for v in versions if v is not None]
        stamps = layout.stamps(known) if len(known) == len(versions) else []
        if not (again or query.fresh) and await self._waited_for_blind_fetch(
            query, days, buckets, layout, versions, stamps, deadline
        ):
            return _waited(await self._buckets_for(query, days, deadline, again=True))
        # Seeds what is missing (newer than any stamp); no store call when nothing is.
        current = await current_versions(
            self._store, layout.keys, versions, self._seed, self._version_ttl
        )
        # At once, with the very values read: a later look could see another read's.
        trusted_for = self._store.trusted_for(layout.keys, current)
        stamps = layout.stamps(current)

        used: list[_Used | None] = [None] * len(days)
        stale: dict[int, Bucket] = {}
        needs: list[tuple[int, _Need]] = []
        ahead = self._refresh_ahead
        due: list[date] = []
        for i, day in enumerate(days):
            bucket = buckets[i]
            previous = None
            if bucket is not None and bucket.stamp == stamps[i]:
                if query.fresh:
                    previous = bucket
                elif now < bucket.expires_at:
                    used[i] = _Used(bucket, Source.CACHE)
                    if self._count_served:  # inline: this is the hit path, per bucket
                        bucket.served += 1
                    if ahead and now >= bucket.expires_at - ahead * (
                        bucket.expires_at - bucket.fetched_at
                    ):
                        due.append(day)
                    continue
                else:
                    previous = bucket
                    if now < bucket.expires_at + self._max_stale:
                        stale[i] = bucket
            needs.append((i, _Need(day, bucket_keys[i], stamps[i], previous)))

        observer = self._observer
        if query.fresh:
            observer.lookups("bypass", len(days))
        elif len(needs) < len(days):
            observer.lookups("hit", len(days) - len(needs))
        if needs:
            extras = await self._window_needs(query, hosts, days, [n.day for _, n in needs])
            results, joined = await self._fill(
                query,
                hosts,
                [need for _, need in needs],
                [i in stale for i, _ in needs],
                deadline,
                extras,
            )
            self._settle(query, used, needs, results, joined, stale)
        elif due:
            self._refresh_ahead_of(query, hosts, due)
        return [u for u in used if u is not None], trusted_for

    async def _waited_for_blind_fetch(
        self,
        query: SlotsQuery,
        days: list[date],
        buckets: Sequence[Bucket | None],
        layout: VersionLayout,
        versions: Sequence[int | None],
        stamps: Sequence[int],
        deadline: Deadline,
    ) -> bool:
        """Wait for fetches begun without hosts (here or on another replica) of the days
        this reader has nothing to serve for; True if there were any (read again).

        ``stamps``: the days' stamps, empty when a version is missing. Called before
        seeding: seeding the hosts' versions now would make such a fetch take the seed
        for an invalidation and fetch again (module docstring). Costs one store read,
        only on a miss with no stale fallback.
        """
        now = self._clock()
        bare = [
            i
            for i, bucket in enumerate(buckets or [None] * len(days))
            if not (
                stamps
                and bucket is not None
                and bucket.stamp == stamps[i]
                and now < bucket.expires_at + self._max_stale  # a hit, or a stale fallback
            )
        ]
        if not bare:
            return False
        value = dict(zip(layout.keys, versions, strict=True))
        without_hosts = self._versions(query.event_type_id, (), days)
        pre = [value[k] for k in without_hosts.keys]
        known = [v for v in pre if v is not None]
        if len(known) != len(pre):
            return False  # such a fetch seeds these before it begins: none is in the air
        pre_stamps = without_hosts.stamps(known)
        bucket_keys = _bucket_keys(
            self._keys, query.event_type_id, query.duration_minutes, days[0], len(days)
        )
        futures: list[asyncio.Future[Bucket]] = []
        leases: list[str] = []
        for i in bare:
            key, stamp = bucket_keys[i], pre_stamps[i]
            flight = self._flights.by_key.get((key, stamp, True))
            if flight is not None and not flight.future.done():
                futures.append(flight.future)
            else:
                leases.append(self._keys.lease_without_hosts(query.event_type_id, key, stamp))
        if leases:
            _, holders = await self._store.read([], leases)
            leases = [
                lease for lease, holder in zip(leases, holders, strict=True) if holder is not None
            ]
        if not (futures or leases):
            return False
        if futures:
            await asyncio.wait(futures, timeout=deadline.remaining())
        await self._leases_gone(leases, deadline.remaining())
        return True

    async def _leases_gone(self, leases: list[str], bound: float) -> None:
        """Wait until another replica's leases are gone (its fetch is over), bounded."""
        if not leases:
            return
        async for _ in polls(min(bound, self._lease_ttl)):
            _, holders = await self._store.read([], leases)
            if all(holder is None for holder in holders):
                return

    async def _read_hosts_unknown(
        self, query: SlotsQuery, days: list[date], deadline: Deadline, *, again: bool
    ) -> tuple[list[_Used], float]:
        """Fetch every day under the versions known without hosts (module docstring). Its
        answer is fetched for this read, so nothing of it is trusted for reuse (0 s)."""
        # The read's days and the rest of their windows, under one store read.
        window = None if query.fresh else self._window_span(days)
        span = (days[0], days[-1])
        if window is not None:
            span = (min(span[0], window[0]), max(span[1], window[1]))
        asked = set(days)
        every = await self._span_needs(query, None, span)
        needs = [need for need in every if need.day in asked]
        extras = [need for need in every if need.day not in asked]
        used: list[_Used | None] = [None] * len(days)
        results, joined = await self._fill(
            query, None, needs, [False] * len(needs), deadline, extras
        )
        if not again and any(isinstance(r, _ReadAgain) for r in results):
            return _waited(await self._buckets_for(query, days, deadline, again=True))
        self._settle(query, used, list(enumerate(needs)), results, joined, {})
        return [u for u in used if u is not None], 0.0

    def _settle(
        self,
        query: SlotsQuery,
        used: list[_Used | None],
        needs: list[tuple[int, _Need]],
        results: list[Bucket | UpstreamError],
        joined: list[bool],
        stale: dict[int, Bucket],
    ) -> None:
        """Place fetched buckets, or stale ones where Cal.com was unavailable; tell the
        observer how each need was had; raise the first error left."""
        errors: list[UpstreamError] = []
        missed = coalesced = served_stale = 0
        for (i, _), result, shared in zip(needs, results, joined, strict=True):
            if isinstance(result, Bucket):
                used[i] = _Used(result, Source.UPSTREAM)
            elif isinstance(result, UpstreamUnavailable) and i in stale:
                used[i] = _Used(stale[i], Source.STALE)
                if self._count_served:
                    _served(stale[i])
                served_stale += 1
                continue
            else:
                errors.append(result)
            if shared:
                coalesced += 1
            else:
                missed += 1
        if not query.fresh:
            tally: tuple[tuple[LookupResult, int], ...] = (
                ("miss", missed),
                ("coalesced", coalesced),
                ("stale", served_stale),
            )
            for name, count in tally:
                if count:
                    self._observer.lookups(name, count)
        if errors:
            raise errors[0]

    def _window_span(self, days: Sequence[date]) -> tuple[date, date] | None:
        """The first and last day of the windows ``days`` fall in (None: none does)."""
        if self._windows is None:
            return None
        now = self._clock()
        spans = [span for day in days if (span := self._windows.span(day, now)) is not None]
        if not spans:
            return None
        return min(first for first, _ in spans), max(last for _, last in spans)

    async def _window_needs(
        self,
        query: SlotsQuery,
        hosts: Sequence[int] | None,
        days: Sequence[date],
        missed: Sequence[date],
    ) -> list[_Need]:
        """Needs for the other days of the windows the ``missed`` days fall in (module
        :mod:`availability.core.windows`): fetched in the same call, waited for by nobody.

        Every day of the window is taken, cached ones too: a gap would split the call
        in two, and a day already cached costs nothing more in it. One store read, on
        misses only.
        """
        if query.fresh:
            return []
        span = self._window_span(missed)
        if span is None:
            return []
        asked = set(days)
        return [
            need for need in await self._span_needs(query, hosts, span) if need.day not in asked
        ]

    async def _span_needs(
        self, query: SlotsQuery, hosts: Sequence[int] | None, span: tuple[date, date]
    ) -> list[_Need]:
        """A need for every day of ``span``, under its current stamp (without the hosts'
        versions when ``hosts`` is None), with the cached bucket it would replace."""
        first, last = span
        count = (last - first).days + 1
        window = [first + timedelta(days=i) for i in range(count)]
        et = query.event_type_id
        layout = self._versions(et, hosts or (), window)
        keys = _bucket_keys(self._keys, et, query.duration_minutes, first, count)
        buckets, versions = await self._store.read(
            keys if hosts is not None else [], layout.keys, StampCheck(layout, self._clock())
        )
        stamps = layout.stamps(
            await current_versions(
                self._store, layout.keys, versions, self._seed, self._version_ttl
            )
        )
        needs = []
        for i, day in enumerate(window):
            bucket = buckets[i] if buckets else None
            previous = bucket if bucket is not None and bucket.stamp == stamps[i] else None
            needs.append(_Need(day, keys[i], stamps[i], previous))
        return needs

    def _refresh_ahead_of(self, query: SlotsQuery, hosts: Sequence[int], due: list[date]) -> None:
        """Refresh buckets read in the last ``refresh_ahead`` of their TTL (and their
        windows) in the background, so that a key read often never makes a caller wait.

        A read in that last stretch is what tells a hot key from a cold one (XFetch's
        idea, made deterministic: the first such read starts it, one refresh per window
        at a time); a key nobody reads then simply expires. The fetch asks the budget
        for its background share: interactive misses come first, and a refusal is not
        remembered as a failure.
        """
        span = self._window_span(due) or (due[0], due[-1])
        key = (query.event_type_id, query.duration_minutes, span[0])
        if key in self._refreshing:
            return
        self._refreshing.add(key)
        self.refreshes_ahead += 1
        self._start(self._refresh(query, hosts, span, key))

    async def _refresh(
        self,
        query: SlotsQuery,
        hosts: Sequence[int],
        span: tuple[date, date],
        key: tuple[int, int, date],
    ) -> None:
        try:
            needs = await self._span_needs(query, hosts, span)
            flights, _ = self._flights_for(query, hosts, needs, Priority.BACKGROUND)
            pending = [f.future for f in flights if isinstance(f, _Flight)]
            if pending:
                await asyncio.wait(pending)
        except Exception as exc:  # nobody waits for it: the bucket simply expires
            logger.debug("refresh ahead failed: %s", exc)
        finally:
            self._refreshing.discard(key)

    def _versions(
        self, event_type_id: int, hosts: Sequence[int], days: Sequence[date]
    ) -> VersionLayout:
        return version_layout(self._keys, event_type_id, tuple(hosts), days[0], len(days))

    # -- fetching ------------------------------------------------------------

    async def _fill(
        self,
        query: SlotsQuery,
        hosts: Sequence[int] | None,
        needs: list[_Need],
        has_stale: list[bool],
        deadline: Deadline,
        extras: Sequence[_Need] = (),
    ) -> tuple[list[Bucket | UpstreamError], list[bool]]:
        """One result per need (its bucket, or why it could not be had in time), and per
        need whether it joined a fetch (or a remembered failure) rather than starting one.

        ``extras``: more days of the needs' windows, fetched in the same calls; this
        caller does not wait for them."""
        if self._pending_misses >= self._max_pending_misses:
            return self._shed(needs), [False] * len(needs)
        if not extras:
            flights, joined = self._flights_for(query, hosts, needs)
        else:
            every = sorted([*needs, *extras], key=lambda need: need.day)
            all_flights, all_joined = self._flights_for(query, hosts, every)
            at = {need.day: i for i, need in enumerate(every)}
            flights = [all_flights[at[need.day]] for need in needs]
            joined = [all_joined[at[need.day]] for need in needs]
        return await self._await_flights(flights, has_stale, deadline), joined

    def _shed(self, needs: list[_Need]) -> list[Bucket | UpstreamError]:
        self.shed += 1
        refusal = Overloaded(
            f"{self._pending_misses} reads are already waiting for Cal.com; retry shortly"
        )
        return [refusal] * len(needs)

    def _flights_for(
        self,
        query: SlotsQuery,
        hosts: Sequence[int] | None,
        needs: list[_Need],
        priority: Priority = Priority.INTERACTIVE,
    ) -> tuple[list[_Flight | UpstreamError], list[bool]]:
        """Join the fetch in the air for each need, or start one, or recall its failure
        (and say which needs joined).

        ``hosts`` None: they are unknown, and the needs carry stamps without them.

        No await between looking a flight up and registering a new one: a
        concurrent reader either sees it or registers it itself.
        """
        loop = asyncio.get_running_loop()
        flights: list[_Flight | UpstreamError] = []
        joined: list[bool] = []
        run: list[tuple[_Need, asyncio.Future[Bucket]]] = []
        runs: list[list[tuple[_Need, asyncio.Future[Bucket]]]] = []
        for need in needs:
            flight_key = (need.key, need.stamp, hosts is None)
            remembered = self._failures.recall(flight_key)
            if remembered is not None:
                flights.append(remembered)
                joined.append(True)
                continue
            flight = None if query.fresh else self._flights.by_key.get(flight_key)
            joined.append(flight is not None and not flight.future.done())
            if flight is None or flight.future.done():  # done: its bucket was stored already
                future: asyncio.Future[Bucket] = loop.create_future()
                future.add_done_callback(_consume_exception)
                flight = _Flight(future, time.monotonic())
                self._flights.by_key[flight_key] = flight
                fetched = need
                if hosts is None:
                    # The reader that begins a fetch without hosts waits only for the slots.
                    early = _early_answer(future)
                    fetched = replace(need, early=early)
                    flight = _Flight(early, flight.started)
                if run and (need.day - run[-1][0].day).days != 1:
                    runs.append(run)
                    run = []
                run.append((fetched, future))
            flights.append(flight)
        if run:
            runs.append(run)
        for each in runs:
            self._start(
                self._claim(query, hosts, each, priority)
                if hosts is not None
                else self._fetch_hosts_unknown(query, each)
            )
        return flights, joined

    def _start(self, fetch: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(fetch)
        self._flights.tasks.add(task)
        task.add_done_callback(self._flights.tasks.discard)

    async def _await_flights(
        self, flights: list[_Flight | UpstreamError], has_stale: list[bool], deadline: Deadline
    ) -> list[Bucket | UpstreamError]:
        """Wait for the flights as long as this caller may, never cancelling them.

        A caller with a stale fallback for every day waits at most
        ``stale_wait`` after the latest of its refreshes began; any other
        waits until its deadline. Whatever has not landed by then is a
        timeout for this caller only: the fetch goes on for the next one.
        """
        waiting = [
            (flight, stale)
            for flight, stale in zip(flights, has_stale, strict=True)
            if isinstance(flight, _Flight) and not flight.future.done()
        ]
        if waiting:
            bound = deadline.remaining()
            if all(stale for _, stale in waiting):
                latest = max(flight.started for flight, _ in waiting)
                bound = min(bound, latest + self._stale_wait - time.monotonic())
            self._pending_misses += 1
            try:
                # asyncio.wait never cancels what it waits for: others share these fetches.
                await asyncio.wait([f.future for f, _ in waiting], timeout=max(0.0, bound))
            finally:
                self._pending_misses -= 1
        return [_outcome(flight) for flight in flights]

    async def _claim(
        self,
        query: SlotsQuery,
        hosts: Sequence[int],
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        priority: Priority = Priority.INTERACTIVE,
    ) -> None:
        """Fetch a run of missing days, unless another replica already is.

        A lease per day (key + stamp) makes one replica the fetcher; the
        others wait for its buckets to appear, bounded by the lease, and
        fetch whatever did not appear themselves (a holder that died).
        """
        leases = [self._keys.lease(query.event_type_id, need.key, need.stamp) for need, _ in run]
        async with self._leased(query, run, leases, hosts_unknown=False) as got:
            fetch = [item for item, mine in zip(run, got, strict=True) if mine]
            if fetch and not query.fresh:
                # Another replica may have stored these and let go of its lease between
                # our read and our lease: a cold miss can afford one more look.
                fetch = await self._not_stored_meanwhile(fetch)
            others = [
                (item, lease)
                for item, lease, mine in zip(run, leases, got, strict=True)
                if not mine
            ]
            if others:
                fetch += await self._await_others(others)
                fetch.sort(key=lambda item: item[0].day)
            await asyncio.gather(
                *(self._fetch_run(query, hosts, part, priority) for part in _adjacent(fetch))
            )

    @contextlib.asynccontextmanager
    async def _leased(
        self,
        query: SlotsQuery,
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        leases: list[str],
        *,
        hosts_unknown: bool,
    ) -> AsyncIterator[list[bool]]:
        """Take ``run``'s leases (which days are ours to fetch) and, whatever happens in
        the block, tell every waiter, land the run's flights and let the leases go.

        A FRESH read takes every day as its own: another replica's answer may predate
        the read. A store failure inside the block ends it: the waiters hear it as
        UNAVAILABLE instead of waiting for an answer that will not come.
        """
        token = lease_token()
        held: list[str] = []
        try:
            got = (
                [True] * len(run)
                if query.fresh
                else await self._store.lease(leases, token, self._lease_ttl)
            )
            held = [lease for lease, mine in zip(leases, got, strict=True) if mine]
            yield got
        except Exception as exc:
            logger.warning("fetch coordination failed: %s", exc)
            for _, future in run:
                if not future.done():
                    future.set_exception(UpstreamUnavailable("cache store failure"))
        finally:
            self._land(run, hosts_unknown=hosts_unknown)
            if held:
                with contextlib.suppress(Exception):
                    await self._store.release(held, token)

    async def _not_stored_meanwhile(
        self, items: list[tuple[_Need, asyncio.Future[Bucket]]]
    ) -> list[tuple[_Need, asyncio.Future[Bucket]]]:
        buckets, _ = await self._store.read([need.key for need, _ in items], [])
        now = self._clock()
        left = []
        for (need, future), bucket in zip(items, buckets, strict=True):
            if (
                bucket is not None
                and bucket.stamp == need.stamp
                and now < bucket.expires_at
                # Newer than the copy this read saw: another replica stored it meanwhile.
                and (need.previous is None or bucket.fetched_at > need.previous.fetched_at)
            ):
                future.set_result(bucket)
            else:
                left.append((need, future))
        return left

    async def _await_others(
        self,
        others: list[tuple[tuple[_Need, asyncio.Future[Bucket]], str]],
    ) -> list[tuple[_Need, asyncio.Future[Bucket]]]:
        """Wait for another replica's fetch; return what it did not deliver.

        A bucket with our stamp ends the wait for its day; a lease that
        vanished without one (its holder failed) or the lease's bound ends it
        for the rest (see :mod:`availability.core.leases`).
        """
        pending = others
        async for _ in polls(self._lease_ttl):
            buckets, holders = await self._store.read(
                [need.key for (need, _), _ in pending], [lease for _, lease in pending]
            )
            now = self._clock()
            still, gone = [], []
            for ((need, future), lease), bucket, holder in zip(
                pending, buckets, holders, strict=True
            ):
                if bucket is not None and bucket.stamp == need.stamp and now < bucket.expires_at:
                    future.set_result(bucket)
                elif holder is None:
                    gone.append((need, future))
                else:
                    still.append(((need, future), lease))
            if gone:
                return gone + [item for item, _ in still]
            pending = still
            if not pending:
                break
        return [item for item, _ in pending]

    def _land(
        self, run: list[tuple[_Need, asyncio.Future[Bucket]]], *, hosts_unknown: bool
    ) -> None:
        """A run's flights are over: tell waiters left without an answer, and let go."""
        for need, future in run:
            if not future.done():
                future.set_exception(UpstreamUnavailable("the fetch was abandoned"))
            flight_key = (need.key, need.stamp, hosts_unknown)
            flight = self._flights.by_key.get(flight_key)
            if flight is not None and flight.future is future:
                del self._flights.by_key[flight_key]

    async def _fetch_run(
        self,
        query: SlotsQuery,
        hosts: Sequence[int],
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        priority: Priority = Priority.INTERACTIVE,
    ) -> None:
        """One upstream call for adjacent days, bounded by ``fetch_timeout`` (its own
        bound: whoever waits for it waits only as long as it may)."""
        started = self._clock()
        fetched = await self._call_upstream(query, run, hosts_unknown=False, priority=priority)
        if fetched is not None:
            await self._deliver(
                query, hosts, run, self._buckets(query.event_type_id, run, fetched, started)
            )

    async def _call_upstream(
        self,
        query: SlotsQuery,
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        *,
        hosts_unknown: bool,
        priority: Priority = Priority.INTERACTIVE,
    ) -> Mapping[date, Sequence[Slot]] | None:
        """Cal.com's slots for the run's days; None when it failed (the waiters are told)."""
        try:
            return await self._upstream.fetch_slots(
                query.event_type_id,
                run[0][0].day,
                run[-1][0].day,
                duration_minutes=query.duration_minutes,
                timeout=self._fetch_timeout,
                priority=priority,
            )
        except UpstreamError as exc:
            # A refresh ahead refused its share of the budget is no failure of Cal.com's:
            # a caller arriving next must not share it.
            remember = not (priority is Priority.BACKGROUND and isinstance(exc, BudgetExhausted))
            await self._fetch_failed(
                query.event_type_id, run, exc, hosts_unknown=hosts_unknown, remember=remember
            )
        except asyncio.CancelledError:
            for _, future in run:
                future.set_exception(UpstreamUnavailable("the fetch was cancelled"))
            raise
        except Exception as exc:  # an adapter bug must not hang every waiter
            logger.exception("upstream adapter failed")
            for _, future in run:
                future.set_exception(UpstreamUnavailable(f"upstream adapter failed: {exc}"))
        return None

    def _buckets(
        self,
        event_type_id: int,
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        fetched: Mapping[date, Sequence[Slot]],
        started: float,
    ) -> list[tuple[str, Bucket, float]]:
        entries: list[tuple[str, Bucket, float]] = []
        for need, _ in run:
            slots = tuple(sorted(fetched.get(need.day, ()), key=lambda s: s.start))
            ttl = self._ttl.ttl(need.day, len(slots), started, event_type_id)
            bucket = Bucket(started, started + ttl, need.stamp, slots)
            entries.append((need.key, bucket, ttl + self._max_stale))
        return entries

    async def _deliver(
        self,
        query: SlotsQuery,
        hosts: Sequence[int],
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        entries: list[tuple[str, Bucket, float]],
    ) -> None:
        """Store what is still current, and hand every bucket to its waiters."""
        current: list[tuple[str, Bucket, float]] = []
        try:
            current = await self._still_current(query, hosts, run, entries)
            await self._store.write(current)
        except Exception:
            # The answer is still right; only the next reader pays a fetch again.
            logger.warning("could not store %d bucket(s)", len(entries), exc_info=True)
        self._compare_refreshed(query.event_type_id, run, entries, current)
        if query.fresh:
            # A fresh read replaces buckets that had not expired and were not invalidated:
            # answers built from them must not be reused any more than after an invalidation.
            self.generation += 1
        for (_, future), (_, bucket, _) in zip(run, entries, strict=True):
            future.set_result(bucket)

    async def _fetch_hosts_unknown(
        self, query: SlotsQuery, run: list[tuple[_Need, asyncio.Future[Bucket]]]
    ) -> None:
        """Fetch a run of days begun without hosts, unless another replica already is:
        then wait until its lease goes and tell the waiters to read again (its bucket
        carries a stamp with the hosts' versions, which only a read that knows them
        can judge)."""
        leases = [
            self._keys.lease_without_hosts(query.event_type_id, need.key, need.stamp)
            for need, _ in run
        ]
        async with self._leased(query, run, leases, hosts_unknown=True) as got:
            theirs = [lease for lease, mine in zip(leases, got, strict=True) if not mine]
            waiting = [item for item, mine in zip(run, got, strict=True) if not mine]
            ours = [item for item, mine in zip(run, got, strict=True) if mine]
            await asyncio.gather(
                self._read_again_after(theirs, waiting),
                *(self._fetch_without_hosts(query, part) for part in _adjacent(ours)),
            )

    async def _read_again_after(
        self, leases: list[str], items: list[tuple[_Need, asyncio.Future[Bucket]]]
    ) -> None:
        """Another replica holds these days' leases: once they are gone, read again."""
        if items:
            await self._leases_gone(leases, self._lease_ttl)
            for _, future in items:
                future.set_exception(_ReadAgain("another replica fetched it; read again"))

    async def _fetch_without_hosts(
        self, query: SlotsQuery, run: list[tuple[_Need, asyncio.Future[Bucket]]]
    ) -> None:
        """The slots fetch, served at once to the reader that began it; then the host
        look-up, and stamp, or fetch again (the argument is in the module docstring)."""
        started = self._clock()
        fetched = await self._call_upstream(query, run, hosts_unknown=True)
        if fetched is None:
            return  # told to every waiter; a 404 costs no look-up
        entries = self._buckets(query.event_type_id, run, fetched, started)
        for (need, _), (_, bucket, _) in zip(run, entries, strict=True):
            if need.early is not None and not need.early.done():
                need.early.set_result(bucket)
        hosts = await self._learn_hosts(query.event_type_id)
        if hosts is None:
            # Readers that joined after the fetch began cannot be told whether a host was
            # invalidated between its start and their read: they are not served this.
            for _, future in run:
                future.set_exception(
                    UpstreamUnavailable("Cal.com did not tell the event type's hosts; retry")
                )
            return
        stamps = await self._learnt_stamps(hosts, run, started)
        if stamps is None:
            await self._fetch_again(query, hosts, run)
            return
        restamped = [
            (_Need(need.day, need.key, stamp), future)
            for (need, future), stamp in zip(run, stamps, strict=True)
        ]
        entries = [
            (key, Bucket(b.fetched_at, b.expires_at, stamp, b.slots), ttl)
            for (key, b, ttl), stamp in zip(entries, stamps, strict=True)
        ]
        await self._deliver(query, hosts, restamped, entries)

    async def _learn_hosts(self, event_type_id: int) -> tuple[int, ...] | None:
        """The look-up that runs beside the fetch; None if it failed (the fetch decides)."""
        try:
            return await self._directory.hosts(event_type_id, wait=self._fetch_timeout)
        except UpstreamError:
            return None

    async def _learnt_stamps(
        self,
        hosts: Sequence[int],
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        started: float,
    ) -> list[int] | None:
        """The run's full stamps, or None if a host was invalidated since ``started``."""
        keys = [self._keys.host_version(h) for h in hosts]
        for need, _ in run:
            keys.extend(self._keys.host_day_version(h, need.day) for h in hosts)
        _, versions = await self._store.read([], keys)
        missing = [k for k, v in zip(keys, versions, strict=True) if v is None]
        seeded: dict[str, int] = {}
        if missing:
            seed = self._seed()
            values = await self._store.seed_versions(missing, seed, self._version_ttl)
            if any(v != seed for v in values):
                return None  # bumped between our read and our seed: after the fetch began
            seeded = dict(zip(missing, values, strict=True))
        line = int((started - SKEW_MARGIN) * 1_000_000)
        if any(v is not None and v >= line for v in versions):
            return None  # bumped (or seeded by someone else) since the fetch began
        current = [seeded[k] if v is None else v for k, v in zip(keys, versions, strict=True)]
        head, per_day = sum(current[: len(hosts)]), len(hosts)
        return [
            need.stamp
            + head
            + sum(current[len(hosts) + i * per_day : len(hosts) + (i + 1) * per_day])
            for i, (need, _) in enumerate(run)
        ]

    async def _fetch_again(
        self,
        query: SlotsQuery,
        hosts: Sequence[int],
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
    ) -> None:
        """A host was invalidated during the fetch: fetch under the full stamps (the way a
        reader knowing the hosts does), and hand those buckets to this run's waiters."""
        days = [need.day for need, _ in run]
        layout = self._versions(query.event_type_id, hosts, days)
        _, versions = await self._store.read([], layout.keys)
        stamps = layout.stamps(
            await current_versions(
                self._store, layout.keys, versions, self._seed, self._version_ttl
            )
        )
        needs = [
            _Need(need.day, need.key, stamp) for (need, _), stamp in zip(run, stamps, strict=True)
        ]
        flights, _ = self._flights_for(query, hosts, needs)
        pending = [f.future for f in flights if isinstance(f, _Flight)]
        if pending:
            await asyncio.wait(pending)
        for (_, future), flight in zip(run, flights, strict=True):
            outcome = _outcome(flight)
            if isinstance(outcome, Bucket):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)

    async def _fetch_failed(
        self,
        event_type_id: int,
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        error: UpstreamError,
        *,
        hosts_unknown: bool,
        remember: bool = True,
    ) -> None:
        """Tell the waiters, and remember: the next callers share the failure for a while."""
        for need, future in run:
            if remember:
                self._failures.remember((need.key, need.stamp, hosts_unknown), error)
            future.set_exception(error)
        if isinstance(error, EventTypeNotFound):
            with contextlib.suppress(Exception):  # only a saving: the 404 is already told
                await self._directory.mark_unknown(event_type_id)

    def _compare_refreshed(
        self,
        event_type_id: int,
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        entries: list[tuple[str, Bucket, float]],
        current: list[tuple[str, Bucket, float]],
    ) -> None:
        """Measured staleness: compare each re-fetched bucket with the one it replaces.

        Only buckets still current after their fetch count: one invalidated meanwhile
        may differ because of a change that *was* reported.
        """
        kept = {id(bucket) for _, bucket, _ in current}
        for (need, _), (_, bucket, _) in zip(run, entries, strict=True):
            if need.previous is not None and id(bucket) in kept:
                changed = _changed(need.previous, bucket)
                self._ttl.refreshed(event_type_id, need.day, need.previous, bucket, changed)
                # Taken, not read: a refetch of the same old bucket must not count them twice.
                suspect = need.previous.served if changed else 0
                if changed:
                    need.previous.served = 0
                self._observer.refreshed(changed, suspect)

    async def _still_current(
        self,
        query: SlotsQuery,
        hosts: Sequence[int],
        run: list[tuple[_Need, asyncio.Future[Bucket]]],
        entries: list[tuple[str, Bucket, float]],
    ) -> list[tuple[str, Bucket, float]]:
        """Drop entries invalidated while their fetch was in flight.

        Readers would reject them anyway; not writing them keeps a slow,
        outdated fetch from overwriting a newer bucket of the same day.
        """
        layout = self._versions(query.event_type_id, hosts, [need.day for need, _ in run])
        _, versions = await self._store.read([], layout.keys)
        if any(v is None for v in versions):
            return []
        stamps = layout.stamps([v for v in versions if v is not None])
        return [
            entry for entry, stamp in zip(entries, stamps, strict=True) if entry[1].stamp == stamp
        ]


# Hot ranges repeat: their keys are built once, not on every read.
@functools.lru_cache(maxsize=4096)
def _bucket_keys(
    keys: KeySchema, event_type_id: int, duration: int, first: date, count: int
) -> tuple[str, ...]:
    return tuple(
        keys.bucket(event_type_id, duration, first + timedelta(days=i)) for i in range(count)
    )


def _adjacent(
    items: list[tuple[_Need, asyncio.Future[Bucket]]],
) -> list[list[tuple[_Need, asyncio.Future[Bucket]]]]:
    """Split ascending days into runs of consecutive days (one upstream call each)."""
    runs: list[list[tuple[_Need, asyncio.Future[Bucket]]]] = []
    for item in items:
        if runs and (item[0].day - runs[-1][-1][0].day).days == 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _outcome(flight: _Flight | UpstreamError) -> Bucket | UpstreamError:
    """What a need got: its bucket, the fetch's error, or a timeout for this caller."""
    if isinstance(flight, UpstreamError):
        return flight
    future = flight.future
    if not future.done():
        return UpstreamUnavailable(
            f"Cal.com has not answered in {time.monotonic() - flight.started:.1f} s "
            "and the caller's deadline is near; retry shortly"
        )
    if future.cancelled():
        return UpstreamUnavailable("the fetch was cancelled")
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, UpstreamError):
        return error
    return UpstreamUnavailable(f"the fetch failed: {error}")


def _early_answer(shared: asyncio.Future[Bucket]) -> asyncio.Future[Bucket]:
    """A future answered early by its fetch, else with whatever ``shared`` ends with."""
    early: asyncio.Future[Bucket] = shared.get_loop().create_future()
    early.add_done_callback(_consume_exception)

    def follow(done: asyncio.Future[Bucket]) -> None:
        if early.done():
            return
        if done.cancelled():
            early.cancel()
        elif (error := done.exception()) is not None:
            early.set_exception(error)
        else:
            early.set_result(done.result())

    shared.add_done_callback(follow)
    return early


def _served(bucket: Bucket) -> None:
    bucket.served += 1


def _changed(old: Bucket, new: Bucket) -> bool:
    """Whether ``new`` offers other slots than ``old`` did, among those not started yet
    when ``new`` was fetched (slots that merely began meanwhile are no change)."""
    since = new.fetched_at
    return old.slots[old.index_at(since) :] != new.slots[new.index_at(since) :]


def _waited(read: tuple[list[_Used], float]) -> tuple[list[_Used], float]:
    """A read again after waiting for another's fetch: it waited for Cal.com, as a
    reader joining that fetch would have (its hits count as fetched for it)."""
    used, trusted_for = read
    for entry in used:
        if entry.source is Source.CACHE:
            entry.source = Source.UPSTREAM
    return used, trusted_for


def _consume_exception(future: asyncio.Future[Bucket]) -> None:
    """Mark a flight's error as seen: it is delivered to whoever waits, if anyone still does."""
    if not future.cancelled():
        future.exception()
