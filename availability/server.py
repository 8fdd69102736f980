"""Assemble and run the service: upstream, cache, gRPC server, health, reflection,
the HTTP port (Cal.com webhook, liveness and readiness probes, ``/metrics``), and
what watches them (metrics, the per-RPC log line, optional tracing).

Lifecycle: the gRPC address is checked first (a busy one stops the start
before anything runs), the HTTP port opens (readiness says 503), then the
gRPC port; health reports SERVING for "" and the service name once it is bound.
SIGTERM/SIGINT flips health and readiness to NOT_SERVING (load balancers
stop sending), in-flight RPCs get ``shutdown_grace`` seconds to finish, the
HTTP port closes last (webhooks keep invalidating while gRPC drains), then
the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from availability.adapters.calcom.client import CalcomUpstream
from availability.adapters.observability.logs import log_fields
from availability.adapters.observability.metrics import ServiceMetrics
from availability.adapters.observability.tracing import TracingUnavailable, open_tracer
from availability.adapters.stores.backend import CacheBackend, open_cache_backend
from availability.config import Settings
from availability.core.adaptive_ttl import AdaptiveTtl
from availability.core.cache import SlotCache
from availability.core.clock import Clock, system_clock
from availability.core.deadlines import DeadlinePolicy
from availability.core.keys import KeySchema
from availability.core.ports import Upstream
from availability.core.ttl import TieredTtl, TtlPolicy
from availability.core.windows import FetchWindows
from availability.resilience.breaker import BreakerState, CircuitBreaker, SharedBreakerState
from availability.resilience.budget import BudgetedUpstream
from availability.resilience.retries import RetryBudget, RetryingUpstream
from availability.sandbox import serve_sandbox
from availability.transport.grpc.health import HEALTH_SERVICE_NAME, HealthServicer
from availability.transport.grpc.hit_memo import HitMemo
from availability.transport.grpc.observing import RpcObserver
from availability.transport.grpc.servicer import (
    SERVICE_NAME,
    AvailabilityService,
    ClosedMethods,
    ServiceHandlers,
)
from availability.transport.grpc.tls import TlsFiles, server_credentials
from availability.transport.grpc.tokens import ApiTokens, load_api_tokens
from availability.transport.http.app import METRICS_PATH, WEBHOOK_PATH, http_app
from availability.transport.http.serving import serve_asgi
from availability.transport.http.webhooks import CalcomWebhooks

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = [
    "KEEPALIVE_ACCEPTED",
    "AddressUnavailable",
    "Resilience",
    "RunningService",
    "open_service",
    "resilient_upstream",
    "run",
    "ttl_policy",
]

logger = logging.getLogger("availability")

# grpc sets SO_REUSEPORT by default: a second server on a busy port would share it silently,
# each with its own in-memory cache, and callers would be spread over both.
_GRPC_OPTIONS = [("grpc.so_reuseport", 0)]


class AddressUnavailable(Exception):
    """A listen address cannot be bound; the message names it and says why."""


KEEPALIVE_ACCEPTED: tuple[tuple[str, int], ...] = (
    # Clients ping idle connections (availability_client every 30 s) so that one a load
    # balancer dropped is replaced between calls; by default a server answers such pings
    # with GOAWAY ("too many pings") after two. Accept them down to every 10 s.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


@dataclass(frozen=True, slots=True)
class RunningService:
    port: int
    """The bound gRPC port (useful with port 0)."""
    cache: SlotCache
    server: grpc.aio.Server
    health: HealthServicer
    calcom_url: str
    http_port: int
    """The bound HTTP port (webhook, probes, metrics)."""
    resilience: Resilience
    """The Cal.com call stack's state (breaker, retries), for metrics and benchmarks."""
    metrics: ServiceMetrics
    hit_memo: HitMemo | None = None
    """The fast lane for repeated reads (None: off, or a shared cache)."""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """Report NOT_SERVING for ``drain`` seconds (balancers move away while
        new calls are still answered), then refuse new RPCs and give in-flight
        ones ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        if drain > 0:
            await asyncio.sleep(drain)
        await self.server.stop(grace)


@dataclass(frozen=True, slots=True)
class Resilience:
    """The decorators between the cache and Cal.com, outermost first."""

    retries: RetryingUpstream
    breaker: CircuitBreaker
    budgeted: BudgetedUpstream

    @property
    def upstream(self) -> Upstream:
        """What the cache calls."""
        return self.retries


def ttl_policy(settings: Settings) -> TtlPolicy:
    """The TTL policy ``AVAILABILITY_TTL_POLICY`` names, from the TTL settings."""
    tiers = TieredTtl(
        empty=settings.ttl_empty,
        near=settings.ttl_near,
        far=settings.ttl_far,
        near_days=settings.ttl_near_days,
    )
    if settings.ttl_policy == "tiered":
        return tiers
    return AdaptiveTtl(
        tiers,
        minimum=settings.ttl_min,
        maximum=settings.ttl_max,
        stale_cost=settings.ttl_stale_cost,
    )


def resilient_upstream(
    calcom: Upstream, backend: CacheBackend, settings: Settings, keys: KeySchema, clock: Clock
) -> Resilience:
    """Stack the Upstream decorators: retries -> breaker -> budget -> Cal.com.

    The order is what makes the guarantees hold:

    - The budget is innermost, next to the HTTP client: every attempt that
      reaches Cal.com (first tries, retries, probes, event-type look-ups)
      spends exactly one unit, and nothing else does.
    - The breaker is outside the budget: while it is open a call fails before
      taking a unit (an open breaker spends nothing), and a refusal by the
      budget is no verdict on Cal.com.
    - Retries are outermost: each attempt passes the breaker, which counts
      attempts (what Cal.com sees) and, once open, stops the retries
      (CircuitOpen is never retried).

    So a failing Cal.com costs at most ``breaker_failures`` calls plus the
    retries the retry budget allows before the breaker opens, then one probe
    per open interval (at most one per ``breaker_open_max`` in a long outage),
    and failure memory keeps each bucket to one fetch per ``failure_memory``:
    the budget is still there when Cal.com recovers.
    """
    budgeted = BudgetedUpstream(calcom, backend.budget)
    breaker = CircuitBreaker(
        budgeted,
        clock=clock,
        failures=settings.breaker_failures,
        failure_ratio=settings.breaker_failure_ratio,
        open_for=settings.breaker_open_for,
        open_max=settings.breaker_open_max,
        # With Redis the breaker is the cluster's; in memory it is this process's anyway.
        shared=None if backend.tiered is None else SharedBreakerState(backend.store, keys),
    )
    retries = RetryingUpstream(
        breaker,
        clock=clock,
        rng=random.Random(),
        attempts=settings.retry_attempts,
        budget=RetryBudget(clock=clock, ratio=settings.retry_budget),
        default_timeout=settings.upstream_timeout,
    )
    return Resilience(retries, breaker, budgeted)


@contextlib.asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[RunningService]:
    """Run the whole service until the block exits (then stop with the configured grace).

    ``tracer_provider``: where spans go when ``settings.tracing`` is on (default: the
    process's provider, else OTLP; see :mod:`availability.adapters.observability.tracing`).
    """
    _check_bindable(settings.grpc_addr)
    metrics = ServiceMetrics()
    tracer = open_tracer(settings.tracing, tracer_provider)
    async with contextlib.AsyncExitStack() as stack:
        calcom_url = settings.calcom_url
        if calcom_url is None:
            sandbox = await stack.enter_async_context(
                serve_sandbox(
                    clock=clock,
                    latency=(settings.sandbox_latency_min, settings.sandbox_latency_max),
                )
            )
            calcom_url = sandbox.url
            logger.info(
                "no Cal.com URL configured: serving the built-in sandbox upstream at %s", calcom_url
            )
        keys = KeySchema(settings.cache_prefix)
        api_key = settings.calcom_api_key
        upstream = CalcomUpstream(
            calcom_url,
            api_key=None if api_key is None else api_key.get_secret_value(),
            default_timeout=settings.upstream_timeout,
            on_request=metrics.upstream_request,
            tracer=tracer,
        )
        stack.push_async_callback(upstream.aclose)
        backend = await stack.enter_async_context(
            open_cache_backend(
                settings.cache_url,
                clock=clock,
                rate_limit=settings.calcom_rate_limit,
                background_share=settings.budget_background_share,
                keys=keys,
                max_local_buckets=settings.local_cache_buckets,
                max_memory_entries=settings.memory_cache_entries,
                trust=settings.local_trust,
            )
        )
        resilience = resilient_upstream(upstream, backend, settings, keys, clock)
        _expose_state(metrics, resilience, backend)
        cache = SlotCache(
            resilience.upstream,
            backend.store,
            clock=clock,
            keys=keys,
            lease_ttl=settings.upstream_timeout,
            ttl=ttl_policy(settings),
            max_stale=settings.max_stale,
            fetch_timeout=settings.upstream_timeout,
            deadlines=DeadlinePolicy(
                default=settings.default_deadline,
                reserve_share=settings.deadline_reserve,
                reserve_min=settings.deadline_reserve_min,
            ),
            stale_wait=settings.stale_wait,
            failure_memory=settings.failure_memory,
            unknown_event_type_ttl=settings.unknown_event_type_ttl,
            max_pending_misses=settings.max_pending_misses,
            observer=metrics,
            windows=(
                FetchWindows(near_days=settings.ttl_near_days, far_days=settings.far_window_days)
                if settings.fetch_windows
                else None
            ),
            refresh_ahead=settings.refresh_ahead,
        )
        stack.push_async_callback(cache.close)
        _expose_cache(metrics, cache, resilience)

        tokens = _tokens(settings)
        # No interceptor: grpc.aio runs each one on every call, fast-lane hits included. Auth
        # is checked where the service's handler is chosen (GetSlots) or by the servicer
        # itself (InvalidateSlots; unregistered methods by ClosedMethods), request bytes are
        # parsed by the servicer (INVALID_ARGUMENT for bad ones), and every handler is
        # wrapped by the observer where it is added.
        observer = RpcObserver(
            metrics,
            logged_services=(SERVICE_NAME,),
            tracer=tracer,
            hit_log_every=settings.hit_log_every,
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        server = grpc.aio.server(
            options=[
                *_GRPC_OPTIONS,
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                *KEEPALIVE_ACCEPTED,
            ],
        )
        # With Redis, entries last only as long as their versions' trust window.
        memo = (
            HitMemo(settings.hit_memo_entries, clock=clock) if settings.hit_memo_entries else None
        )
        service = AvailabilityService(
            cache, max_range_days=settings.max_range_days, memo=memo, tokens=tokens, metrics=metrics
        )
        # The service's methods as a generic handler, consulted first: measured under
        # callgrind, grpc.aio's registered methods cost each call more than one dict look-up.
        server.add_generic_rpc_handlers(
            (
                ServiceHandlers(service, observer),
                observer.generic(ClosedMethods(tokens)),
            )
        )
        # Health and reflection as generic handlers only: grpc.aio keeps a pending call per
        # registered method and tends them on every RPC; probes and grpcurl can wait the
        # few microseconds a generic look-up costs them.
        generic_only = cast(grpc.aio.Server, _GenericOnly(server, observer))
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, generic_only)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
            reflection.aio.ReflectionServicer(
                (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)
            ),
            generic_only,
        )
        http = await stack.enter_async_context(
            _serve_http(settings, cache, health_servicer, metrics)
        )
        tls = _tls(settings)
        try:
            if tls is None:
                port = server.add_insecure_port(settings.grpc_addr)
            else:
                port = server.add_secure_port(settings.grpc_addr, server_credentials(tls))
        except RuntimeError:
            # Taken since _check_bindable looked (grpc says only "Failed to bind").
            raise AddressUnavailable(f"cannot serve gRPC on {settings.grpc_addr}") from None
        await server.start()
        running = RunningService(
            port, cache, server, health_servicer, calcom_url, http, resilience, metrics, memo
        )
        try:
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
            logger.info(
                "serving %s on %s%s",
                SERVICE_NAME,
                _bound(settings.grpc_addr, port),
                "" if tls is None else " (mTLS)" if tls.client_ca else " (TLS)",
                # asyncio's or uvloop's (see Settings.event_loop)
                extra=log_fields(
                    event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0]
                ),
            )
            yield running
        finally:
            await running.stop(settings.shutdown_grace, settings.shutdown_drain)


def _expose_cache(metrics: ServiceMetrics, cache: SlotCache, resilience: Resilience) -> None:
    """The cache's own counters, read at scrape time like :func:`_expose_state`'s."""
    metrics.gauge(
        "availability_pending_misses",
        "Reads waiting for Cal.com right now (past AVAILABILITY_MAX_PENDING_MISSES new "
        "misses are shed).",
        lambda: cache.pending_misses,
    )
    metrics.counter(
        "availability_misses_shed",
        "Misses refused at once because too many reads were waiting for Cal.com.",
        lambda: cache.shed,
    )
    metrics.counter(
        "availability_refreshes_ahead",
        "Background refreshes begun for buckets read shortly before they expire.",
        lambda: cache.refreshes_ahead,
    )
    metrics.counter(
        "availability_budget_deferred",
        "Background Cal.com calls refused: only interactive misses may spend the rest.",
        lambda: resilience.budgeted.deferred,
    )


def _expose_state(metrics: ServiceMetrics, resilience: Resilience, backend: CacheBackend) -> None:
    """State other objects keep, read by the metrics at scrape time (plain attributes, so
    the request path pays nothing). Stale answers are counted already:
    ``availability_answers_total{source="stale"}``."""
    budget = backend.budget
    budgeted, breaker, retries = resilience.budgeted, resilience.breaker, resilience.retries
    metrics.counter(
        "availability_upstream_retries",
        "Cal.com attempts made again after a failure (within the retry budget).",
        lambda: retries.retried,
    )
    metrics.counter(
        "availability_upstream_retries_denied",
        "Retries the retry budget refused (so that retries never multiply an outage).",
        lambda: retries.budget_denied,
    )
    metrics.gauge(
        "availability_breaker_open",
        "1 while the Cal.com circuit breaker is open or half-open, else 0.",
        lambda: 0 if breaker.state is BreakerState.CLOSED else 1,
    )
    metrics.counter(
        "availability_breaker_opened",
        "Times the Cal.com circuit breaker opened.",
        lambda: breaker.transitions[BreakerState.OPEN],
    )
    metrics.counter(
        "availability_breaker_rejected",
        "Cal.com calls refused by the open breaker (failing fast, spending no budget).",
        lambda: breaker.rejected,
    )
    metrics.gauge(
        "availability_budget_limit",
        "Cal.com calls allowed per window (about a minute), for the whole cluster.",
        lambda: budget.limit,
    )
    metrics.sampled_gauge(
        "availability_budget_used",
        "Cal.com calls taken in the current window (cluster-wide when shared in Redis).",
        budget.in_window,
    )
    metrics.counter(
        "availability_budget_denied",
        "Cal.com calls not made because the budget was spent.",
        lambda: budgeted.denied,
    )
    tiered = backend.tiered
    if tiered is not None:
        metrics.gauge(
            "availability_local_tier_buckets",
            "Buckets held in this process's tier in front of Redis.",
            lambda: tiered.local_buckets,
        )
        metrics.counter(
            "availability_local_tier_evictions",
            "Buckets pushed out of the local tier by its bound.",
            lambda: tiered.local_evictions,
        )
        metrics.counter(
            "availability_trust_renewals",
            "Background Redis reads that renewed trust windows before they closed.",
            lambda: tiered.reconfirmations,
        )
        metrics.gauge(
            "availability_redis_degraded",
            "1 while Redis is unreachable and this replica serves from its local tier.",
            lambda: float(tiered.degraded),
        )


def _tokens(settings: Settings) -> ApiTokens:
    secret = settings.api_tokens
    tokens = load_api_tokens(
        None if secret is None else secret.get_secret_value(), settings.api_tokens_file
    )
    if not len(tokens):
        logger.warning("no API tokens configured: any caller may call InvalidateSlots")
    else:
        logger.info("%d API token(s) configured: calls need 'authorization: Bearer'", len(tokens))
    return tokens


class _GenericOnly:
    """What the generated ``add_*_to_server`` functions see: generic handlers pass
    through to the server, watched by the observer; registered ones are dropped (see
    open_service)."""

    def __init__(self, server: grpc.aio.Server, observer: RpcObserver) -> None:
        self._server = server
        self._observer = observer

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([self._observer.generic(h) for h in handlers])

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        return None


def _tls(settings: Settings) -> TlsFiles | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


@contextlib.asynccontextmanager
async def _serve_http(
    settings: Settings, cache: SlotCache, health: HealthServicer, metrics: ServiceMetrics
) -> AsyncIterator[int]:
    """Serve the webhook, the probes and the metrics; yields the bound port."""
    secret = settings.webhook_secret
    webhooks = CalcomWebhooks(
        cache,
        secret=None if secret is None else secret.get_secret_value(),
        max_body=settings.webhook_max_body,
        timeout=settings.upstream_timeout,
        metrics=metrics,
    )
    host, _, port = settings.http_addr.rpartition(":")
    app = http_app(webhooks, ready=health.serving, metrics=metrics)
    async with serve_asgi(app, host.strip("[]"), int(port)) as http:
        logger.info(
            "HTTP (Cal.com webhook at %s, /healthz, /readyz, %s) listening on %s",
            WEBHOOK_PATH,
            METRICS_PATH,
            _bound(settings.http_addr, http.port),
        )
        if secret is None:
            logger.warning("no webhook secret configured: %s answers 503", WEBHOOK_PATH)
        yield http.port


def _check_bindable(addr: str) -> None:
    """Raise :class:`AddressUnavailable` if ``addr`` (``host:port``) cannot be bound now.

    grpc reports a failed bind as a bare RuntimeError after logging its own line from C,
    and only once everything else has started; a plain socket says why, before anything
    has. The probe binds without listening and lets go at once (SO_REUSEADDR, as grpc: a
    port whose connections are in TIME_WAIT is free).
    """
    host, _, port = addr.rpartition(":")
    if int(port) == 0:
        return
    try:
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
    except OSError as exc:
        raise AddressUnavailable(f"cannot serve gRPC on {addr}: {exc.strerror or exc}") from None


def _bound(addr: str, port: int) -> str:
    host = addr.rpartition(":")[0]
    return f"{host}:{port}"


async def run(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; the process's exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with open_service(settings):
            await stop.wait()
            logger.info(
                "shutting down: finishing in-flight calls (up to %ss)", settings.shutdown_grace
            )
    except (AddressUnavailable, TracingUnavailable) as exc:
        logger.error("%s", exc)
        return 1
    except OSError as exc:
        # The HTTP port (bound first) is taken or not ours to bind.
        logger.error("cannot serve HTTP on %s: %s", settings.http_addr, exc.strerror or exc)
        return 1
    logger.info("stopped")
    return 0
