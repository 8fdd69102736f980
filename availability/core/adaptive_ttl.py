"""An adaptive TTL: per event type and tier, balance Cal.com calls against stale answers.

The cost being minimised, per bucket and per second, is ``calls + K * stale
answers``, where ``K`` (``stale_cost``) says how many Cal.com calls one stale
answer is worth. A bucket is read at rate lambda (Poisson) and changes
without anyone reporting it at rate mu (reported changes invalidate it at
once and cost no staleness). Under a TTL ``T`` a bucket lives a renewal
cycle: fetched, served for ``T``, then the next read (on average ``1/lambda``
later) fetches it again. Per cycle that is one call and, for ``mu*T << 1``
(a change an hour against TTLs of minutes), ``lambda * mu * T**2 / 2`` stale
answers (a hit at age ``a`` is stale with probability about ``mu*a``). The
cost rate

    (1 + K * lambda * mu * T**2 / 2) / (T + 1/lambda)

is least at

    T* = sqrt(1/lambda**2 + 2 / (K * lambda * mu)) - 1/lambda

This is the classical square-root rule ``sqrt(2 c_call / (c_stale * lambda *
mu))`` with the gap after expiry kept: when ``lambda*T`` is large the two
agree, but a bucket read only every half minute or so (the seed's off-peak
hours) spends a good part of each cycle expired, unread and costing nothing,
and the rule without the gap would give it too short a TTL. A bucket nobody
reads tends to ``T* = 1/(K*mu)``, never to zero or infinity. The result is
clamped to ``[minimum, maximum]``.

Estimates, robust at low counts:

- Feedback comes from refreshes of buckets still current
  (:meth:`AdaptiveTtl.refreshed`): the old bucket lived ``D`` seconds (fetch
  to fetch), was read ``served + 1`` times (its hits and the read that
  refetched it; the cache counts ``served`` whenever it is observed, which the
  server always is) and either changed or did not. So ``lambda = reads /
  exposure`` and ``mu = changes / exposure``, both maximum-likelihood
  estimates for Poisson processes.
- Counts and exposure decay exponentially: reads with a half-life of minutes
  (the rate follows peak and off-peak hours), changes with a half-life of days
  (a handful a day: a shorter memory would be mostly noise).
- Priors keep the tiers' meaning: until changes are measured a tier's TTL is
  its tier setting, however often its buckets are read. The prior change rate
  is the one for which ``T*`` is the tier TTL at the estimated read rate
  (``mu0 = 2 / (K * T_tier * (lambda * T_tier + 2))``), worth
  ``prior_exposure`` seconds of bucket life; the prior read rate (one read per
  tier TTL) is worth one TTL, as reads come by the hundred. Measured changes
  then pull the TTL away from the tier, at most by the square root of (decayed
  exposure + prior) / prior: for one bucket with the default half-life and
  prior, about 2.3-fold either way. Each event type's estimates are shrunk
  towards the other event types' of its tier, so a rarely read event type
  borrows their rates until it has data of its own.

What it buys (``availability lab``, README "The TTL lab"): on the seed's single-day
workload with 90 % of bookings reported it sits at fixed 60 s's trade, within the
lab's noise (spending TTL by read rate gains at most about 4 % there); it cuts
staleness fivefold for twice the calls when nothing is reported, and lengthens
TTLs when everything is.

Limits: reads are counted per process, so behind one Redis with N replicas
(each refresh sees only its own replica's hits) lambda is underestimated up to
N-fold and the TTL up to sqrt(N) too long, within ``maximum``. Per-event-type
state is bounded (LRU, ``max_event_types`` entries per tier).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date

from availability.core.buckets import Bucket
from availability.core.ttl import TIER_CLASSES, TierClass, TieredTtl

__all__ = ["AdaptiveTtl", "Estimate", "optimal_ttl"]


@dataclass(slots=True)
class _Rate:
    """Events over exposure (seconds), both decaying with one half-life."""

    half_life: float
    events: float = 0.0
    exposure: float = 0.0
    at: float = -math.inf

    def _decay(self, now: float) -> float:
        if now <= self.at:
            return 1.0  # feedback may land slightly out of order: never grow old data
        return 0.5 ** ((now - self.at) / self.half_life) if self.at > -math.inf else 0.0

    def add(self, events: float, exposure: float, now: float) -> None:
        keep = self._decay(now)
        self.events = self.events * keep + events
        self.exposure = self.exposure * keep + exposure
        self.at = max(self.at, now)

    def at_time(self, now: float) -> tuple[float, float]:
        """(events, exposure) decayed to ``now``."""
        keep = self._decay(now)
        return self.events * keep, self.exposure * keep


def _shrunk(events: float, exposure: float, prior: float, weight: float) -> float:
    """The rate ``events / exposure``, shrunk towards ``prior`` as if it had ``weight``
    seconds of exposure."""
    return (events + prior * weight) / (exposure + weight)


@dataclass(slots=True)
class _Rates:
    reads: _Rate
    changes: _Rate


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the policy believes about one event type's buckets of one tier."""

    reads_per_second: float
    changes_per_second: float
    """Unreported changes per second per bucket."""
    ttl: float


@dataclass(slots=True)
class AdaptiveTtl:
    """A :class:`~availability.core.ttl.TtlPolicy` learning from refreshes (module docstring)."""

    tiers: TieredTtl = field(default_factory=TieredTtl)
    """The tier rule, and each tier's TTL before anything is known (the prior)."""
    minimum: float = 15.0
    maximum: float = 900.0
    stale_cost: float = 150.0
    """Cal.com calls one stale answer is worth (the setting's default, chosen in the lab)."""
    read_half_life: float = 600.0
    change_half_life: float = 3 * 86_400.0
    prior_exposure: float = 86_400.0
    """Seconds of bucket life the prior change rate is worth."""
    max_event_types: int = 10_000
    _pooled: dict[TierClass, _Rates] = field(init=False, repr=False)
    _by_event_type: OrderedDict[tuple[int, TierClass], _Rates] = field(
        init=False, repr=False, default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError("minimum must be positive and at most maximum")
        for name in ("stale_cost", "read_half_life", "change_half_life", "prior_exposure"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_event_types < 1:
            raise ValueError("max_event_types must be at least 1")
        self._pooled = {tier: self._new_rates() for tier in TIER_CLASSES}

    def _new_rates(self) -> _Rates:
        return _Rates(_Rate(self.read_half_life), _Rate(self.change_half_life))

    # -- the policy ----------------------------------------------------------

    def ttl(
        self, day: date, slot_count: int, now: float, event_type_id: int | None = None
    ) -> float:
        return self.estimate(self.tiers.tier(day, slot_count, now), now, event_type_id).ttl

    def refreshed(
        self, event_type_id: int, day: date, previous: Bucket, bucket: Bucket, changed: bool
    ) -> None:
        lived = bucket.fetched_at - previous.fetched_at
        if lived <= 0:
            return  # not a later fetch of the same day: nothing to learn
        tier = self.tiers.tier(day, len(previous.starts), previous.fetched_at)
        now = bucket.fetched_at
        reads = previous.served + 1
        for rates in (self._pooled[tier], self._rates(event_type_id, tier)):
            rates.reads.add(reads, lived, now)
            rates.changes.add(1.0 if changed else 0.0, lived, now)

    @property
    def longest(self) -> float:
        return self.maximum

    # -- estimates -----------------------------------------------------------

    def estimate(self, tier: TierClass, now: float, event_type_id: int | None = None) -> Estimate:
        """The rates and TTL for ``event_type_id``'s buckets of ``tier`` at ``now``
        (None: the tier's, pooled over event types)."""
        prior_ttl = self.tiers.of(tier)
        pooled = self._pooled[tier]
        all_reads, all_changes = pooled.reads.at_time(now), pooled.changes.at_time(now)
        key = None if event_type_id is None else (event_type_id, tier)
        own = None if key is None else self._by_event_type.get(key)
        if key is None or own is None:
            reads = _shrunk(*all_reads, 1.0 / prior_ttl, prior_ttl)
            changes = _shrunk(
                *all_changes, self._prior_changes(reads, prior_ttl), self.prior_exposure
            )
        else:
            self._by_event_type.move_to_end(key)
            # Shrunk towards the *other* event types (the pool is the sum of all, decay
            # being linear), so that one event type's data does not count twice.
            own_reads, own_changes = own.reads.at_time(now), own.changes.at_time(now)
            others = _shrunk(*_minus(all_reads, own_reads), 1.0 / prior_ttl, prior_ttl)
            reads = _shrunk(*own_reads, others, prior_ttl)
            prior = self._prior_changes(reads, prior_ttl)
            others = _shrunk(*_minus(all_changes, own_changes), prior, self.prior_exposure)
            changes = _shrunk(*own_changes, others, self.prior_exposure)
        return Estimate(reads, changes, self._bounded(optimal_ttl(reads, changes, self.stale_cost)))

    def _prior_changes(self, reads: float, prior_ttl: float) -> float:
        """The change rate for which a bucket read at ``reads`` gets ``prior_ttl`` (T* solved
        for mu), so that until changes are measured the tier TTL stands."""
        return 2.0 / (self.stale_cost * prior_ttl * (reads * prior_ttl + 2.0))

    def _bounded(self, ttl: float) -> float:
        return min(self.maximum, max(self.minimum, ttl))

    def _rates(self, event_type_id: int, tier: TierClass) -> _Rates:
        key = (event_type_id, tier)
        rates = self._by_event_type.get(key)
        if rates is None:
            rates = self._by_event_type[key] = self._new_rates()
            if len(self._by_event_type) > self.max_event_types * len(TIER_CLASSES):
                self._by_event_type.popitem(last=False)
        else:
            self._by_event_type.move_to_end(key)
        return rates


def _minus(total: tuple[float, float], part: tuple[float, float]) -> tuple[float, float]:
    return max(0.0, total[0] - part[0]), max(0.0, total[1] - part[1])


def optimal_ttl(reads_per_second: float, changes_per_second: float, stale_cost: float) -> float:
    """``T*`` of the module docstring; infinite when nothing changes."""
    if changes_per_second <= 0:
        return math.inf
    gap = 1.0 / reads_per_second
    spread = 2.0 / (stale_cost * reads_per_second * changes_per_second)
    # sqrt(gap**2 + spread) - gap, written so that a large gap loses no precision
    return spread / (math.sqrt(gap * gap + spread) + gap)
