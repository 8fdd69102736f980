"""Prometheus metrics: plain numbers on the hot paths, turned into metrics at scrape time.

A cache hit is the product, so nothing on its path goes through
prometheus-client's labelled ``Counter.inc()`` (a label lookup and a lock per
call). :class:`ServiceMetrics` adds to plain ints and fixed-bucket
:class:`Histogram` objects instead, and one custom collector builds the metric
families from them whenever ``/metrics`` is scraped. Each service owns its
:class:`~prometheus_client.CollectorRegistry` (never the global one), so several
services in one process (tests, the demo) keep their own figures.

Names follow Prometheus conventions: base units, ``_total`` counters, labels of
low cardinality only (never an event type or host id). The gRPC families use
go-grpc-prometheus' names and label values, so its dashboards work unchanged.
``availability_*`` covers the cache, Cal.com, the budget, invalidation and
measured staleness; the README's "Watching it" lists each with a PromQL recipe.

State that other objects already keep (the budget's window, the local tier's
size, whether Redis is reachable) is not copied here: :meth:`ServiceMetrics.gauge`
and :meth:`ServiceMetrics.counter` register a function read at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from availability.core.cache import Source
from availability.core.observe import LOOKUP_RESULTS, LookupResult

__all__ = [
    "AGE_BOUNDS",
    "RPC_BOUNDS",
    "UPSTREAM_BOUNDS",
    "UPSTREAM_ENDPOINTS",
    "UPSTREAM_OUTCOMES",
    "Histogram",
    "RpcCells",
    "ServiceMetrics",
]

logger = logging.getLogger(__name__)

RPC_BOUNDS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""``grpc_server_handling_seconds``: go-grpc-prometheus' default buckets (5 ms to 10 s)
and three below them, because a cache hit takes about a millisecond."""
AGE_BOUNDS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
"""``availability_answer_age_seconds``: around the TTL tiers (30, 60, 300 s) and ``max_stale``."""
UPSTREAM_BOUNDS: Final = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
"""``availability_upstream_request_duration_seconds``: Cal.com answers in 0.3-0.8 s."""

UPSTREAM_ENDPOINTS: Final = ("slots", "event_type")
UPSTREAM_OUTCOMES: Final = (
    "ok", "not_found", "rejected", "rate_limited", "server_error", "timeout", "connection",
    "malformed",
)  # fmt: skip
"""What one HTTP request to Cal.com came to; see :mod:`availability.adapters.calcom.client`."""

INVALIDATION_ORIGINS: Final = ("rpc", "webhook")

_CACHE: Final = Source.CACHE


class Histogram:
    """Fixed upper bounds (inclusive, as Prometheus' ``le``), one plain int per bucket."""

    __slots__ = ("_labels", "bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0
        self._labels = [repr(float(b)) for b in bounds] + ["+Inf"]

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus exposes them, ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        running = 0
        for le, count in zip(self._labels, self.counts, strict=True):
            running += count
            out.append((le, running))
        return out


@dataclass(slots=True)
class RpcCells:
    """The counters of one gRPC method; the RPC observer keeps a reference per method."""

    labels: tuple[str, str, str]
    """grpc_service, grpc_method, grpc_type."""
    started: int = 0
    handled: dict[str, int] = field(default_factory=dict)
    """By grpc_code (go-grpc-prometheus spelling: ``OK``, ``InvalidArgument``, ...)."""
    seconds: Histogram = field(default_factory=lambda: Histogram(RPC_BOUNDS))

    def finished(self, code: str, seconds: float) -> None:
        handled = self.handled
        handled[code] = handled.get(code, 0) + 1
        self.seconds.observe(seconds)

    def served(self, seconds: float) -> None:
        """A call started and finished OK at once (a fast-lane hit): what ``started += 1``
        and :meth:`finished` count, in one call with the histogram inlined (it runs on
        every hit)."""
        self.started += 1
        handled = self.handled
        handled["OK"] = handled.get("OK", 0) + 1
        histogram = self.seconds
        histogram.counts[bisect_left(RPC_BOUNDS, seconds)] += 1
        histogram.total += seconds


@dataclass(frozen=True, slots=True)
class _Reading:
    name: str
    documentation: str
    read: Callable[[], float]
    counter: bool


class ServiceMetrics:
    """Everything one service counts; also its :class:`CacheObserver`.

    The methods called per request only add to numbers. The Prometheus text is
    built by :meth:`exposition`, on scrape.
    """

    def __init__(self, *, process_metrics: bool = True) -> None:
        self._rpcs: dict[tuple[str, str, str], RpcCells] = {}
        self._lookups: dict[LookupResult, int] = dict.fromkeys(LOOKUP_RESULTS, 0)
        self._answers: dict[Source, int] = dict.fromkeys(Source, 0)
        self._cache_answers = 0
        """Answers from the cache, kept apart from ``_answers``: see :meth:`answered`."""
        self._answer_age = Histogram(AGE_BOUNDS)
        self._refreshes = {False: 0, True: 0}
        self._suspect_hits = 0
        self._upstream: dict[tuple[str, str], int] = {
            (endpoint, outcome): 0
            for endpoint in UPSTREAM_ENDPOINTS
            for outcome in UPSTREAM_OUTCOMES
        }
        self._upstream_seconds = {e: Histogram(UPSTREAM_BOUNDS) for e in UPSTREAM_ENDPOINTS}
        self._invalidations = dict.fromkeys(INVALIDATION_ORIGINS, 0)
        self._webhooks: dict[str, int] = {}
        self._readings: list[_Reading] = []
        self._sampled: list[tuple[str, str, Callable[[], Awaitable[float]]]] = []
        self._samples: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        if process_metrics:
            # The standard process_* / python_* families, read from /proc at scrape time.
            for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(standard)

    # -- the cache (CacheObserver) -----------------------------------------------------

    def lookups(self, result: LookupResult, count: int) -> None:
        self._lookups[result] += count

    def answered(self, source: Source, age: float) -> None:
        # Once per answer, so kept lean: hits skip hashing the enum (a Python-level
        # __hash__), and Histogram.observe is inlined.
        if source is _CACHE:
            self._cache_answers += 1
        else:
            self._answers[source] += 1
        age_histogram = self._answer_age
        age_histogram.counts[bisect_left(AGE_BOUNDS, age)] += 1
        age_histogram.total += age

    def refreshed(self, changed: bool, suspect_hits: int) -> None:
        self._refreshes[changed] += 1
        self._suspect_hits += suspect_hits

    # -- gRPC, Cal.com, invalidation, webhooks ----------------------------------------

    def rpc(self, service: str, method: str, rpc_type: str) -> RpcCells:
        """The counters of one method (created on first use; callers keep the reference)."""
        key = (service, method, rpc_type)
        cells = self._rpcs.get(key)
        if cells is None:
            cells = self._rpcs[key] = RpcCells(key)
        return cells

    def upstream_request(self, endpoint: str, outcome: str, seconds: float) -> None:
        """One HTTP request to Cal.com (retries are requests too)."""
        key = (endpoint, outcome)
        self._upstream[key] = self._upstream.get(key, 0) + 1
        histogram = self._upstream_seconds.get(endpoint)
        if histogram is None:
            histogram = self._upstream_seconds[endpoint] = Histogram(UPSTREAM_BOUNDS)
        histogram.observe(seconds)

    def invalidated(self, origin: str) -> None:
        """One invalidation applied; ``origin`` ``rpc`` (InvalidateSlots) or ``webhook``."""
        self._invalidations[origin] = self._invalidations.get(origin, 0) + 1

    def webhook_delivery(self, outcome: str) -> None:
        self._webhooks[outcome] = self._webhooks.get(outcome, 0) + 1

    # -- state kept elsewhere, read on scrape ------------------------------------------

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Expose ``read()`` as gauge ``name``, read at every scrape."""
        self._readings.append(_Reading(name, documentation, read, counter=False))

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Expose ``read()`` (a count that only grows) as counter ``name``, read at every
        scrape. ``name`` is given without ``_total``; the exposition adds it."""
        self._readings.append(_Reading(name, documentation, read, counter=True))

    def sampled_gauge(
        self, name: str, documentation: str, read: Callable[[], Awaitable[float]]
    ) -> None:
        """A gauge whose value needs I/O (e.g. a count kept in Redis): awaited before each
        scrape, bounded by a second; omitted from that scrape if it fails."""
        self._sampled.append((name, documentation, read))

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The current metrics and their content type (text format, or OpenMetrics when
        ``accept`` asks for it)."""
        for name, _, read in self._sampled:
            try:
                self._samples[name] = await asyncio.wait_for(read(), 1.0)
            except Exception as exc:  # a scrape must not fail because one source did
                logger.debug("metric %s not sampled: %s", name, exc)
                self._samples.pop(name, None)
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    # -- exposition ----------------------------------------------------------------------

    def _families(self) -> Iterator[Metric]:
        yield from self._rpc_families()
        lookups = CounterMetricFamily(
            "availability_cache_lookups",
            "Day buckets GetSlots needed, by how each was had.",
            labels=["result"],
        )
        for result, count in self._lookups.items():
            lookups.add_metric([result], count)
        yield lookups
        answers = CounterMetricFamily(
            "availability_answers",
            "GetSlots answers, by the source their freshness names.",
            labels=["source"],
        )
        for source, count in self._answers.items():
            answers.add_metric(
                [source.value], count + (self._cache_answers if source is _CACHE else 0)
            )
        yield answers
        yield _histogram(
            "availability_answer_age_seconds",
            "Age of the oldest bucket of each GetSlots answer.",
            [],
            [((), self._answer_age)],
        )
        refreshes = CounterMetricFamily(
            "availability_refreshes",
            "Re-fetches of buckets believed current (TTL ran out, or a fresh read), by "
            "whether their slots had changed unreported.",
            labels=["changed"],
        )
        for changed, count in self._refreshes.items():
            refreshes.add_metric(["true" if changed else "false"], count)
        yield refreshes
        yield CounterMetricFamily(
            "availability_suspect_hits",
            "Answers served from buckets a refresh then found changed: an upper bound on "
            "answers that offered a taken slot.",
            value=self._suspect_hits,
        )
        upstream = CounterMetricFamily(
            "availability_upstream_requests",
            "HTTP requests to Cal.com (retries included), by endpoint and outcome.",
            labels=["endpoint", "outcome"],
        )
        for (endpoint, outcome), count in self._upstream.items():
            upstream.add_metric([endpoint, outcome], count)
        yield upstream
        yield _histogram(
            "availability_upstream_request_duration_seconds",
            "Duration of HTTP requests to Cal.com.",
            ["endpoint"],
            [((endpoint,), h) for endpoint, h in self._upstream_seconds.items()],
        )
        invalidations = CounterMetricFamily(
            "availability_invalidations",
            "Invalidations applied, by origin (InvalidateSlots or a Cal.com webhook); "
            "one whose host look-up failed still invalidated its own scope and counts.",
            labels=["origin"],
        )
        for origin, count in self._invalidations.items():
            invalidations.add_metric([origin], count)
        yield invalidations
        webhooks = CounterMetricFamily(
            "availability_webhook_deliveries",
            "Cal.com webhook deliveries, by outcome.",
            labels=["outcome"],
        )
        for outcome, count in sorted(self._webhooks.items()):
            webhooks.add_metric([outcome], count)
        yield webhooks
        yield from self._read_families()

    def _rpc_families(self) -> Iterator[Metric]:
        labels = ["grpc_service", "grpc_method", "grpc_type"]
        started = CounterMetricFamily(
            "grpc_server_started", "RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            labels=[*labels, "grpc_code"],
        )
        cells = list(self._rpcs.values())
        for each in cells:
            started.add_metric(list(each.labels), each.started)
            for code, count in sorted(each.handled.items()):
                handled.add_metric([*each.labels, code], count)
        yield started
        yield handled
        yield _histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server.",
            labels,
            [(each.labels, each.seconds) for each in cells],
        )

    def _read_families(self) -> Iterator[Metric]:
        for reading in self._readings:
            try:
                value = float(reading.read())
            except Exception as exc:  # a scrape must not fail because one source did
                logger.debug("metric %s not read: %s", reading.name, exc)
                continue
            family = CounterMetricFamily if reading.counter else GaugeMetricFamily
            yield family(reading.name, reading.documentation, value=value)
        for name, documentation, _ in self._sampled:
            if name in self._samples:
                yield GaugeMetricFamily(name, documentation, value=self._samples[name])


def _histogram(
    name: str,
    documentation: str,
    labels: list[str],
    series: Iterable[tuple[tuple[str, ...], Histogram]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in series:
        family.add_metric(list(values), histogram.cumulative(), histogram.total)
    return family


class _Collector(Collector):
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._families())
