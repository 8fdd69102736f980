"""The core: the slot cache and everything it decides, on the standard library alone.

It owns the key scheme, the version stamps that make invalidation race-safe,
single-flight, TTL policy and the regrouping by local date. It reaches the
world only through :mod:`availability.core.ports` and reads time only from
the clock it is given, so tests and the TTL lab drive it on a virtual clock.
A test proves that importing it loads nothing outside the standard library.
"""

from availability.core.cache import (
    Freshness,
    Invalidation,
    InvalidationScope,
    SlotCache,
    SlotsAnswer,
    SlotsQuery,
    Source,
)
from availability.core.clock import Clock, ManualClock, system_clock

__all__ = [
    "Clock",
    "Freshness",
    "Invalidation",
    "InvalidationScope",
    "ManualClock",
    "SlotCache",
    "SlotsAnswer",
    "SlotsQuery",
    "Source",
    "system_clock",
]
