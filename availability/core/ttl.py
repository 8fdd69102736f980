"""How long a cached day bucket stays valid.

The tiers come from the seed analysis: a day with no slots is re-checked
soonest (a cancellation there is the likeliest surprise), the coming week is
booked most often, far-future days change rarely. Invalidation is the primary
freshness mechanism; these TTLs are the safety net for changes nobody reports.

:class:`TtlPolicy` is what the cache asks: a TTL when it stores a bucket, and
what a refresh of a bucket still believed current found (the feedback an
adaptive policy learns from, :mod:`availability.core.adaptive_ttl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal, Protocol

from availability.core.buckets import Bucket
from availability.core.local_days import DAY

__all__ = ["TIER_CLASSES", "TierClass", "TieredTtl", "TtlPolicy"]

TierClass = Literal["empty", "near", "far"]
"""Which tier a bucket falls in: no slots, a day within ``near_days``, any later day."""

TIER_CLASSES: tuple[TierClass, ...] = ("empty", "near", "far")


class TtlPolicy(Protocol):
    """Decides each bucket's TTL; told what refreshes found. Must not block: both calls
    sit on the fetch path (never on the hit path)."""

    def ttl(
        self, day: date, slot_count: int, now: float, event_type_id: int | None = None
    ) -> float:
        """Seconds the bucket for UTC ``day`` of ``event_type_id`` holding ``slot_count``
        slots, fetched at ``now``, is served."""
        ...

    def refreshed(
        self, event_type_id: int, day: date, previous: Bucket, bucket: Bucket, changed: bool
    ) -> None:
        """``previous``, still current (no invalidation since its fetch), was replaced by
        ``bucket``; ``changed``: their slots differ (a change nobody reported).
        ``previous.served`` still holds the answers served from it."""
        ...

    @property
    def longest(self) -> float:
        """No bucket lives longer than this."""
        ...


@dataclass(frozen=True, slots=True)
class TieredTtl:
    """Per-bucket TTL in seconds by tier, decided when the bucket is stored."""

    empty: float = 30.0
    """A day with no slots."""
    near: float = 60.0
    """A day that starts within ``near_days`` of now (or has started)."""
    far: float = 300.0
    """Any later day."""
    near_days: float = 7.0

    def __post_init__(self) -> None:
        for name in ("empty", "near", "far", "near_days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def tier(self, day: date, slot_count: int, now: float) -> TierClass:
        """The tier of the bucket for UTC ``day`` holding ``slot_count`` slots at ``now``."""
        if slot_count == 0:
            return "empty"
        day_start = datetime.combine(day, time(), UTC).timestamp()
        if day_start - now < self.near_days * DAY:
            return "near"
        return "far"

    def of(self, tier: TierClass) -> float:
        """The TTL of ``tier``."""
        return self.empty if tier == "empty" else self.near if tier == "near" else self.far

    def ttl(
        self, day: date, slot_count: int, now: float, event_type_id: int | None = None
    ) -> float:
        """The TTL of the bucket for UTC ``day`` holding ``slot_count`` slots, stored at ``now``."""
        return self.of(self.tier(day, slot_count, now))

    def refreshed(
        self, event_type_id: int, day: date, previous: Bucket, bucket: Bucket, changed: bool
    ) -> None:
        return None  # fixed tiers learn nothing

    @property
    def longest(self) -> float:
        return max(self.empty, self.near, self.far)
