"""The demo's figures, read from the service's own ``/metrics`` (so the demo tests them).

:class:`Snapshot` is one scrape, parsed with prometheus-client's parser, reduced
to what the dashboard shows; :func:`quantile` estimates a latency quantile from
histogram buckets the way PromQL's ``histogram_quantile`` does, so the
dashboard's p50 and p99 are the figures a Grafana panel would show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Snapshot", "quantile"]

K = TypeVar("K")

_GET_SLOTS = {"grpc_service": "availability.v1.AvailabilityService", "grpc_method": "GetSlots"}


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile from cumulative ``{upper bound: count}`` buckets (``+Inf``
    included), interpolating linearly inside the bucket it falls in; None without data."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: say the bound, as PromQL does
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Snapshot:
    """One scrape of ``/metrics``, as the dashboard needs it."""

    at: float
    """Seconds since the demo began."""
    calls: dict[str, float] = field(default_factory=dict)
    """GetSlots calls by grpc_code."""
    latency: dict[float, float] = field(default_factory=dict)
    """GetSlots ``grpc_server_handling_seconds`` buckets: upper bound -> cumulative count."""
    latency_sum: float = 0.0
    lookups: dict[str, float] = field(default_factory=dict)
    answers: dict[str, float] = field(default_factory=dict)
    upstream: dict[str, float] = field(default_factory=dict)
    """Cal.com requests by outcome (both endpoints)."""
    upstream_slots: float = 0.0
    """Cal.com ``/v2/slots`` requests."""
    budget_used: float = 0.0
    budget_limit: float = 0.0
    budget_denied: float = 0.0
    refreshes: dict[str, float] = field(default_factory=dict)
    suspect_hits: float = 0.0
    invalidations: dict[str, float] = field(default_factory=dict)
    webhooks: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, at: float) -> Snapshot:
        labelled: dict[str, dict[Any, float]] = {name: {} for name, _ in _LABELLED.values()}
        scalars: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels, name = sample.labels, sample.name
                if name.startswith("grpc_server_") and not _has(labels, _GET_SLOTS):
                    continue
                if name == "availability_upstream_requests_total" and (
                    labels.get("endpoint") == "slots"
                ):
                    scalars["upstream_slots"] = scalars.get("upstream_slots", 0.0) + sample.value
                if name in _LABELLED:
                    attribute, label = _LABELLED[name]
                    key: Any = float(labels[label]) if label == "le" else labels[label]
                    _add(labelled[attribute], key, sample.value)
                elif name in _SCALARS:
                    attribute = _SCALARS[name]
                    scalars[attribute] = scalars.get(attribute, 0.0) + sample.value
        return cls(
            at=at,
            calls=labelled["calls"],
            latency=labelled["latency"],
            lookups=labelled["lookups"],
            answers=labelled["answers"],
            upstream=labelled["upstream"],
            refreshes=labelled["refreshes"],
            invalidations=labelled["invalidations"],
            webhooks=labelled["webhooks"],
            **scalars,
        )

    # -- what the dashboard shows --------------------------------------------------

    @property
    def total_calls(self) -> float:
        return sum(self.calls.values())

    @property
    def hit_rate(self) -> float | None:
        """Hits over buckets looked up in the cache (fresh reads skip it by design)."""
        looked = sum(v for k, v in self.lookups.items() if k != "bypass")
        return self.lookups.get("hit", 0.0) / looked if looked else None

    @property
    def staleness_rate(self) -> float | None:
        """Suspect hits over hits: an upper bound on answers that offered a taken slot."""
        hits = self.lookups.get("hit", 0.0)
        return self.suspect_hits / hits if hits else None

    @property
    def calcom_calls(self) -> float:
        return sum(self.upstream.values())

    @property
    def average_latency(self) -> float | None:
        count = self.latency.get(math.inf, 0.0)
        return self.latency_sum / count if count else None

    def latency_quantile(self, q: float) -> float | None:
        return quantile(q, self.latency)

    def since(self, earlier: Snapshot) -> Snapshot:
        """The counts of the interval from ``earlier`` to this scrape (gauges as now)."""
        return Snapshot(
            at=self.at,
            calls=_minus(self.calls, earlier.calls),
            latency=_minus(self.latency, earlier.latency),
            latency_sum=self.latency_sum - earlier.latency_sum,
            lookups=_minus(self.lookups, earlier.lookups),
            answers=_minus(self.answers, earlier.answers),
            upstream=_minus(self.upstream, earlier.upstream),
            upstream_slots=self.upstream_slots - earlier.upstream_slots,
            budget_used=self.budget_used,
            budget_limit=self.budget_limit,
            budget_denied=self.budget_denied - earlier.budget_denied,
            refreshes=_minus(self.refreshes, earlier.refreshes),
            suspect_hits=self.suspect_hits - earlier.suspect_hits,
            invalidations=_minus(self.invalidations, earlier.invalidations),
            webhooks=_minus(self.webhooks, earlier.webhooks),
        )


_LABELLED = {
    "grpc_server_handled_total": ("calls", "grpc_code"),
    "grpc_server_handling_seconds_bucket": ("latency", "le"),
    "availability_cache_lookups_total": ("lookups", "result"),
    "availability_answers_total": ("answers", "source"),
    "availability_upstream_requests_total": ("upstream", "outcome"),
    "availability_refreshes_total": ("refreshes", "changed"),
    "availability_invalidations_total": ("invalidations", "origin"),
    "availability_webhook_deliveries_total": ("webhooks", "outcome"),
}
"""Sample name -> (Snapshot attribute, the label it is keyed by)."""

_SCALARS = {
    "grpc_server_handling_seconds_sum": "latency_sum",
    "availability_budget_used": "budget_used",
    "availability_budget_limit": "budget_limit",
    "availability_budget_denied_total": "budget_denied",
    "availability_suspect_hits_total": "suspect_hits",
}


def _has(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def _add(into: dict[K, float], key: K, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def _minus(now: Mapping[K, float], then: Mapping[K, float]) -> dict[K, float]:
    keys: Iterable[K] = now.keys() | then.keys()
    return {k: now.get(k, 0.0) - then.get(k, 0.0) for k in keys}
