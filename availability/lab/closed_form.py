"""The closed form for a fixed TTL under the single-key workload, to check the simulation.

Per period of constant query rate lambda, a bucket lives T seconds after the
miss that fetched it, and the next query after it expires misses again, so a
cycle holds one miss and on average lambda*T hits:

    hit ratio            = lambda*T / (1 + lambda*T)
    slot calls per query = 1 / (1 + lambda*T)

Bookings arrive at rate mu (Poisson) and each makes the cached day wrong
until it is refetched. A hit's age is uniform on [0, T], so the share of
hits that offer a taken slot is the mean of 1 - exp(-mu*a):

    stale share of hits  = 1 - (1 - exp(-mu*T)) / (mu*T)

of which only the unreported share stays stale (a reported booking is
invalidated at once). The seed analysis's own figures (1,680 / 1,200 / 480
calls a day for 45 / 60 / 300 s) assumed miss rates instead of deriving them;
this gives 1,242 / 1,018 / 265. It ignores Cal.com's latency (queries during
a fetch wait for it) and the hourly event-type look-up, which is why the
simulation's hit ratio is a little lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from availability.lab.workload import Workload

__all__ = ["Prediction", "predict"]


@dataclass(frozen=True, slots=True)
class Prediction:
    hit_ratio: float
    slot_calls_per_day: float
    stale_ratio: float
    """Share of all answers (hits and misses) that offer a taken slot."""


def predict(workload: Workload, ttl: float) -> Prediction:
    queries = hits = calls = 0.0
    for period in workload.periods():
        rate = period.queries_per_minute / 60.0
        count = rate * period.seconds
        queries += count
        hits += count * rate * ttl / (1 + rate * ttl)
        calls += count / (1 + rate * ttl)
    mu_t = workload.booking_rate * ttl
    stale_share = 1 - (1 - math.exp(-mu_t)) / mu_t if mu_t > 0 else 0.0
    hit_ratio = hits / queries if queries else 0.0
    return Prediction(
        hit_ratio=hit_ratio,
        slot_calls_per_day=calls,
        stale_ratio=hit_ratio * stale_share * (1 - workload.signaled),
    )
