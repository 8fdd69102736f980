"""How long a cached day bucket stays valid.

The tiers come from the seed analysis: a day with no slots is re-checked
soonest (a cancellation there is the likeliest surprise), the coming week is
booked most often, far-future days change rarely. Invalidation is the primary
freshness mechanism; these TTLs are the safety net for changes nobody reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from availability.core.local_days import DAY

__all__ = ["TieredTtl"]


@dataclass(frozen=True, slots=True)
class TieredTtl:
    """Per-bucket TTL in seconds, decided when the bucket is stored."""

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

    def ttl(self, day: date, slot_count: int, now: float) -> float:
        """The TTL of the bucket for UTC ``day`` holding ``slot_count`` slots, stored at ``now``."""
        if slot_count == 0:
            return self.empty
        day_start = datetime.combine(day, time(), UTC).timestamp()
        if day_start - now < self.near_days * DAY:
            return self.near
        return self.far

    @property
    def longest(self) -> float:
        return max(self.empty, self.near, self.far)
