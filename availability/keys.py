"""The one key scheme. Every replica and every caller derives keys here.

Layout (``{p}`` is the configurable prefix, default ``av1``)::

    {p}:b:{event_type_id}:{duration}:{YYYY-MM-DD}   day bucket (UTC day; duration 0 = default)
    {p}:v                                          version: everything
    {p}:v:e:{event_type_id}                        version: all days of one event type
    {p}:v:d:{event_type_id}:{YYYY-MM-DD}           version: one UTC day of one event type

A bucket is valid only while the sum of the versions that cover it equals
the stamp it was stored with (see :mod:`availability.cache`). Durations share
the versions of their event type: a booking blocks every length alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["KeySchema"]


@dataclass(frozen=True, slots=True)
class KeySchema:
    prefix: str = "av1"

    def bucket(self, event_type_id: int, duration_minutes: int, day: date) -> str:
        return f"{self.prefix}:b:{event_type_id}:{duration_minutes}:{day.isoformat()}"

    def everything_version(self) -> str:
        return f"{self.prefix}:v"

    def event_type_version(self, event_type_id: int) -> str:
        return f"{self.prefix}:v:e:{event_type_id}"

    def day_version(self, event_type_id: int, day: date) -> str:
        return f"{self.prefix}:v:d:{event_type_id}:{day.isoformat()}"
