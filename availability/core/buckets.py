"""A day bucket: the unit of caching.

One bucket holds the slots of one event type (at one duration) that start on
one UTC day, as fetched from the upstream at one moment. It is immutable so
that an in-process store can hand the same object to every reader without
copying, and it carries everything a reader needs to judge it: when it was
fetched, when it expires, and the version stamp read before its fetch began.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from availability.core.slots import Seats, Slot

__all__ = ["Bucket"]


@dataclass(frozen=True, slots=True)
class Bucket:
    fetched_at: float
    """When the fetch that produced this bucket began (epoch seconds)."""
    expires_at: float
    """``fetched_at`` plus the bucket's tier TTL."""
    stamp: int
    """The versions in force before the fetch began; see :mod:`availability.core.versions`."""
    slots: tuple[Slot, ...]
    """Ascending by start."""

    memo: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """Per-bucket work done once and reused on every hit (a transport's encoded slots),
    and per-bucket counts (answers served from it). Keyed by whoever keeps the entry;
    never part of the bucket's value."""

    def index_at(self, instant: float, lo: int = 0, hi: int | None = None) -> int:
        """Index of the first slot (from ``lo``) starting at or after ``instant``."""
        # A 1-tuple sorts before every Slot with the same start: bisect on starts alone.
        return bisect_left(self.slots, (instant,), lo, len(self.slots) if hi is None else hi)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-safe data, for stores that serialise (never pickle)."""
        return {
            "fetched_at": self.fetched_at,
            "expires_at": self.expires_at,
            "stamp": self.stamp,
            "slots": [
                [s.start, s.end, None if s.seats is None else list(s.seats)] for s in self.slots
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bucket:
        return cls(
            fetched_at=float(data["fetched_at"]),
            expires_at=float(data["expires_at"]),
            stamp=int(data["stamp"]),
            slots=tuple(
                Slot(start, end, None if seats is None else Seats(*seats))
                for start, end, seats in data["slots"]
            ),
        )
