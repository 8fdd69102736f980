"""Which days one Cal.com call fetches: whole windows, not the days a caller named.

Cal.com's budget counts calls, not days: ``/v2/slots`` answers a month as
cheaply as a day. So when a read misses any day of a window, the fetch takes
the whole window (the days that are missing, expiring or merely cached alike:
they cost nothing more in the same call, and a window fetched together expires
together), and a working set of N event types costs about N calls per TTL
instead of N x days.

Two windows, from the TTL tiers (:class:`~availability.core.ttl.TieredTtl`):

- the *near* window: today and every UTC day that starts within
  ``near_days`` (the near TTL tier's rule), the days booked most;
- the *far* window: the days after it that start within ``far_days``.

A day past the far window is fetched by itself (nobody reads that far ahead
often enough to pay for a month of buckets). Windows follow the clock: they
are computed at each read from ``now``, never stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from availability.core.local_days import DAY, utc_day

__all__ = ["FetchWindows"]


@dataclass(frozen=True, slots=True)
class FetchWindows:
    near_days: float = 7.0
    """The near window reaches the days that start within this many days of now."""
    far_days: float = 30.0
    """The far window reaches on to the days that start within this many days (at most
    ``near_days``: no far window)."""

    def __post_init__(self) -> None:
        if self.near_days <= 0 or self.far_days < 0:
            raise ValueError("near_days must be positive and far_days not negative")

    def span(self, day: date, now: float) -> tuple[date, date] | None:
        """The first and last day of the window holding UTC ``day``; None if none does."""
        today = utc_day(now)
        near_last = self._last_day(now, self.near_days)
        if today <= day <= near_last:
            return today, near_last
        far_last = self._last_day(now, self.far_days)
        if near_last < day <= far_last:
            return near_last + timedelta(days=1), far_last
        return None

    @staticmethod
    def _last_day(now: float, days: float) -> date:
        """The last UTC day that starts before ``now + days``."""
        return utc_day((math.ceil((now + days * DAY) / DAY) - 1) * DAY)
