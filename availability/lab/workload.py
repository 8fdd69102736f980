"""What the lab simulates: who asks for which days how often, and how often slots get booked.

The default is the seed analysis's single-key model, so that its figures and
the closed form (:mod:`.closed_form`) can be checked against a simulation:
one event type, 10 queries a minute during 4 peak hours (08-10 and 14-16
UTC) and 2 a minute for the other 20, Poisson; 1.5 bookings an hour; Cal.com
answers in 550 ms; every query asks for the same day (tomorrow) and every
booking takes a free slot of that day, replaced by another freed slot so the
day never runs out. Flags widen it: several event types with Zipf
popularity, queries over ranges of days spread over the next weeks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from availability.core.local_days import DAY

__all__ = ["HOUR", "Period", "Workload"]

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of each day with one query rate."""

    start_hour: float
    end_hour: float
    queries_per_minute: float

    @property
    def seconds(self) -> float:
        return (self.end_hour - self.start_hour) * HOUR


@dataclass(frozen=True, slots=True)
class Workload:
    days: int = 30
    """Simulated days."""
    peak_queries_per_minute: float = 10.0
    offpeak_queries_per_minute: float = 2.0
    peak_hours: tuple[tuple[float, float], ...] = ((8.0, 10.0), (14.0, 16.0))
    """UTC hours of peak traffic, [start, end)."""
    bookings_per_hour: float = 1.5
    """Bookings per event type and hour (each takes a slot some query asks about)."""
    latency: float = 0.55
    """Seconds Cal.com takes for every call."""
    signaled: float = 0.0
    """Share of bookings reported through InvalidateSlots (0: none; the TTL alone)."""
    event_types: int = 1
    zipf: float = 1.0
    """Popularity exponent across event types (weight of the k-th: 1 / k**zipf)."""
    spread_days: int = 1
    """Queries ask about a day among the next ``spread_days`` (1: always tomorrow)."""
    range_days: int = 1
    """Days each query covers."""
    slots_per_day: int = 48
    """Half-hour slots a day from 00:00 UTC: more than a day's bookings, so a booking nearly
    always takes a slot that every older cached copy still offers (the closed form's premise)."""
    seed: int = 7

    def __post_init__(self) -> None:
        if self.days <= 0 or self.event_types <= 0 or self.spread_days <= 0:
            raise ValueError("days, event_types and spread_days must be positive")
        if not 0.0 <= self.signaled <= 1.0:
            raise ValueError("signaled is a share: 0..1")
        if self.range_days <= 0 or self.slots_per_day <= 1:
            raise ValueError("range_days must be positive and slots_per_day above 1")

    def periods(self) -> list[Period]:
        """The day cut into peak and off-peak stretches, in order."""
        out: list[Period] = []
        at = 0.0
        for start, end in sorted(self.peak_hours):
            if start > at:
                out.append(Period(at, start, self.offpeak_queries_per_minute))
            out.append(Period(start, end, self.peak_queries_per_minute))
            at = end
        if at < 24.0:
            out.append(Period(at, 24.0, self.offpeak_queries_per_minute))
        return out

    def weights(self) -> list[float]:
        """Each event type's share of the queries (Zipf)."""
        raw = [1.0 / (k**self.zipf) for k in range(1, self.event_types + 1)]
        total = sum(raw)
        return [w / total for w in raw]

    def query_times(self, rng: random.Random) -> Iterator[float]:
        """Arrival times (seconds from the start) of all queries, ascending: Poisson per period."""
        periods = self.periods()
        for day in range(self.days):
            for period in periods:
                rate = period.queries_per_minute / 60.0
                if rate <= 0:
                    continue
                t = day * DAY + period.start_hour * HOUR
                end = day * DAY + period.end_hour * HOUR
                while True:
                    t += rng.expovariate(rate)
                    if t >= end:
                        break
                    yield t

    def booking_times(self, rng: random.Random) -> Iterator[float]:
        """Arrival times of bookings (all event types together), ascending."""
        rate = self.bookings_per_hour * self.event_types / HOUR
        t = 0.0
        end = self.days * DAY
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= end:
                return
            yield t

    def queries_per_day(self) -> float:
        return sum(p.queries_per_minute * p.seconds / 60.0 for p in self.periods())

    @property
    def booking_rate(self) -> float:
        """Bookings per second per event type (the closed form's mu)."""
        return self.bookings_per_hour / HOUR

    def describe(self) -> str:
        return (
            f"{self.days} days, {self.event_types} event type(s), "
            f"{self.peak_queries_per_minute:g}/{self.offpeak_queries_per_minute:g} queries a "
            f"minute (peak/off-peak), {self.bookings_per_hour:g} bookings an hour, "
            f"Cal.com {self.latency * 1000:.0f} ms, {self.signaled:.0%} of bookings reported, "
            f"seed {self.seed}"
        )
