"""The domain values every layer shares: a bookable slot and its seat counts.

Times are integer seconds since the Unix epoch (UTC). Cal.com reports slots
to the millisecond but only ever on whole minutes, and integers compare,
hash and serialise cheaply on the hit path.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Seats", "Slot"]


class Seats(NamedTuple):
    """Seat counts Cal.com adds to slots of seated event types."""

    total: int | None = None
    booked: int | None = None
    remaining: int | None = None
    booking_uid: str | None = None


class Slot(NamedTuple):
    """One bookable slot. Immutable, so cached copies can be shared safely."""

    start: int
    """Start, epoch seconds UTC."""
    end: int | None
    """End, epoch seconds UTC; None only when the upstream did not say."""
    seats: Seats | None = None
