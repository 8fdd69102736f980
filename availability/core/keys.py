"""The one key scheme. Every replica and every caller derives keys here.

Layout (``{p}`` is the configurable prefix, default ``av1``)::

    {p}:b:{event_type_id}:{duration}:{YYYY-MM-DD}   day bucket (UTC day; duration 0 = default)
    {p}:v                                          version: everything
    {p}:v:e:{event_type_id}                        version: all days of one event type
    {p}:v:d:{event_type_id}:{YYYY-MM-DD}           version: one UTC day of one event type
    {p}:v:h:{host_id}                              version: all days of one host
    {p}:v:hd:{host_id}:{YYYY-MM-DD}                version: one UTC day of one host
    {p}:et:{event_type_id}                         record: the event type's hosts (JSON)
    {p}:l:{event_type_id}:{stamp}:{bucket key}     lease: one replica fetches that bucket
    {p}:l:nh:{event_type_id}:{stamp}:{bucket key}  lease: the same, by a replica without hosts
    {p}:l:et:{event_type_id}                       lease: one replica looks the event type up
    {p}:budget                                     the cluster's Cal.com calls (sorted set)
    {p}:budget:pause                               set while Cal.com blocks the key (429)
    {p}:breaker                                    record: the cluster's Cal.com circuit breaker
    {p}:breaker:probe                              lease: one replica probes a failing Cal.com
    {p}:replicas                                   replicas alive (heartbeats, sorted set)

A bucket is valid only while the sum of the versions that cover it equals
the stamp it was stored with (see :mod:`availability.core.versions`). Durations share
the versions of their event type: a booking blocks every length alike. Host
versions cover every event type of the host: a booking blocks the host's
time everywhere.
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

    def host_version(self, host_id: int) -> str:
        return f"{self.prefix}:v:h:{host_id}"

    def host_day_version(self, host_id: int, day: date) -> str:
        return f"{self.prefix}:v:hd:{host_id}:{day.isoformat()}"

    def event_type_record(self, event_type_id: int) -> str:
        return f"{self.prefix}:et:{event_type_id}"

    def lease(self, event_type_id: int, bucket_key: str, stamp: int) -> str:
        return f"{self.prefix}:l:{event_type_id}:{stamp}:{bucket_key}"

    def lease_without_hosts(self, event_type_id: int, bucket_key: str, stamp: int) -> str:
        """A fetch stamped before its hosts were known (:mod:`availability.core.cache`)."""
        return f"{self.prefix}:l:nh:{event_type_id}:{stamp}:{bucket_key}"

    def event_type_lease(self, event_type_id: int) -> str:
        return f"{self.prefix}:l:et:{event_type_id}"

    def budget_window(self) -> str:
        return f"{self.prefix}:budget"

    def budget_pause(self) -> str:
        return f"{self.prefix}:budget:pause"

    def breaker(self) -> str:
        return f"{self.prefix}:breaker"

    def breaker_probe(self) -> str:
        return f"{self.prefix}:breaker:probe"

    def replicas(self) -> str:
        return f"{self.prefix}:replicas"
