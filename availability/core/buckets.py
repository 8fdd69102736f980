"""A day bucket: the unit of caching.

One bucket holds the slots of one event type (at one duration) that start on
one UTC day, as fetched from the upstream at one moment. It is immutable so
that an in-process store can hand the same object to every reader without
copying, and it carries everything a reader needs to judge it: when it was
fetched, when it expires, and the version stamp read before its fetch began.

Slots are kept column-wise (starts and ends in two ``array('q')``, seat
counts only when the event type is seated), not as a tuple of ``Slot``
tuples: a bucket of 16 slots then costs about 400 bytes instead of 2.3 KB, and
bisecting the starts needs no object per slot. ``Slot`` values are built only
when someone asks for them (off the hit path).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from availability.core.slots import Seats, Slot

__all__ = ["Bucket"]

_NO_END = -(2**63)
"""Stands for ``end=None`` in the ends column (no slot ends before 1970)."""


class Bucket:
    __slots__ = ("ends", "expires_at", "fetched_at", "memo", "seats", "served", "stamp", "starts")

    fetched_at: float
    """When the fetch that produced this bucket began (epoch seconds)."""
    expires_at: float
    """``fetched_at`` plus the bucket's tier TTL."""
    stamp: int
    """The versions in force before the fetch began; see :mod:`availability.core.versions`."""
    starts: array[int]
    """Slot starts, epoch seconds, ascending."""
    ends: array[int]
    """Slot ends, epoch seconds (``_NO_END`` where the upstream did not say)."""
    seats: tuple[Seats | None, ...] | None
    """Seat counts per slot; None when no slot has any (most event types)."""
    memo: Any
    """Per-bucket work one transport does once and reuses on every hit (the gRPC
    wire encoding). Never part of the bucket's value."""
    served: int
    """Answers this process served from the bucket (suspect hits, should it turn out
    to have been wrong; counted only when observed). Never part of the bucket's value."""

    def __init__(self, fetched_at: float, expires_at: float, stamp: int, slots: Sequence[Slot]):
        self.fetched_at = fetched_at
        self.expires_at = expires_at
        self.stamp = stamp
        self.starts = array("q", [s.start for s in slots])
        self.ends = array("q", [_NO_END if s.end is None else s.end for s in slots])
        self.seats = tuple(s.seats for s in slots) if any(s.seats for s in slots) else None
        self.memo = None
        self.served = 0

    def __len__(self) -> int:
        return len(self.starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bucket):
            return NotImplemented
        return (self.fetched_at, self.expires_at, self.stamp, self.slots) == (
            other.fetched_at,
            other.expires_at,
            other.stamp,
            other.slots,
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, never a dict key

    def __repr__(self) -> str:
        return (
            f"Bucket(fetched_at={self.fetched_at!r}, expires_at={self.expires_at!r}, "
            f"stamp={self.stamp!r}, slots={len(self)})"
        )

    def slot(self, index: int) -> Slot:
        end = self.ends[index]
        seats = None if self.seats is None else self.seats[index]
        return Slot(self.starts[index], None if end == _NO_END else end, seats)

    @property
    def slots(self) -> tuple[Slot, ...]:
        """Every slot, ascending by start (built on each call: not for the hit path)."""
        return tuple(self.slot(i) for i in range(len(self)))

    def index_at(self, instant: float, lo: int = 0, hi: int | None = None) -> int:
        """Index of the first slot (from ``lo``) starting at or after ``instant``."""
        return bisect_left(self.starts, instant, lo, len(self.starts) if hi is None else hi)

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
