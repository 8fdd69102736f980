"""Assemble and run the service: upstream, cache, gRPC server, health, reflection,
the HTTP port (Cal.com webhook, liveness and readiness probes, ``/metrics``), and
what watches them (metrics, the per-RPC log line, optional tracing).

Lifecycle: the HTTP port opens first (readiness says 503), then the gRPC
port; health reports SERVING for "" and the service name once it is bound.
SIGTERM/SIGINT flips health and readiness to NOT_SERVING (load balancers
stop sending), in-flight RPCs get ``shutdown_grace`` seconds to finish, the
HTTP port closes last (webhooks keep invalidating while gRPC drains), then
the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from availability.adapters.calcom.client import CalcomUpstream
from availability.adapters.observability.metrics import ServiceMetrics
from availability.adapters.observability.tracing import TracingUnavailable, open_tracer
from availability.adapters.stores.backend import CacheBackend, open_cache_backend
from availability.config import Settings
from availability.core.cache import SlotCache
from availability.core.clock import Clock, system_clock
from availability.core.keys import KeySchema
from availability.core.ttl import TieredTtl
from availability.resilience.budget import BudgetedUpstream
from availability.sandbox import serve_sandbox
from availability.transport.grpc.health import HEALTH_SERVICE_NAME, HealthServicer
from availability.transport.grpc.interceptors import AuthInterceptor, MalformedRequestInterceptor
from availability.transport.grpc.observing import ObservingInterceptor
from availability.transport.grpc.servicer import SERVICE_NAME, AvailabilityService, rpc_handlers
from availability.transport.grpc.tls import TlsFiles, server_credentials
from availability.transport.grpc.tokens import load_api_tokens
from availability.transport.http.app import METRICS_PATH, WEBHOOK_PATH, http_app
from availability.transport.http.serving import serve_asgi
from availability.transport.http.webhooks import CalcomWebhooks

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["KEEPALIVE_ACCEPTED", "RunningService", "open_service", "run"]

logger = logging.getLogger("availability")

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
    metrics: ServiceMetrics

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
                keys=keys,
                max_local_buckets=settings.local_cache_buckets,
            )
        )
        budgeted = BudgetedUpstream(upstream, backend.budget)
        _expose_state(metrics, budgeted, backend)
        cache = SlotCache(
            budgeted,
            backend.store,
            clock=clock,
            keys=keys,
            lease_ttl=settings.upstream_timeout,
            ttl=TieredTtl(
                empty=settings.ttl_empty,
                near=settings.ttl_near,
                far=settings.ttl_far,
                near_days=settings.ttl_near_days,
            ),
            max_stale=settings.max_stale,
            observer=metrics,
        )
        stack.push_async_callback(cache.close)

        server = grpc.aio.server(
            interceptors=[
                # First: it must see every call, refusals by the others included.
                ObservingInterceptor(metrics, logged_services=(SERVICE_NAME,), tracer=tracer),
                *_interceptors(settings),
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                *KEEPALIVE_ACCEPTED,
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        handlers = rpc_handlers(
            AvailabilityService(
                cache,
                max_range_days=settings.max_range_days,
                upstream_timeout=settings.upstream_timeout,
                metrics=metrics,
            )
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        server.add_registered_method_handlers(SERVICE_NAME, handlers)
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        http = await stack.enter_async_context(
            _serve_http(settings, cache, health_servicer, metrics)
        )
        tls = _tls(settings)
        if tls is None:
            port = server.add_insecure_port(settings.grpc_addr)
        else:
            port = server.add_secure_port(settings.grpc_addr, server_credentials(tls))
        await server.start()
        running = RunningService(port, cache, server, health_servicer, calcom_url, http, metrics)
        try:
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
            logger.info(
                "serving %s on %s%s",
                SERVICE_NAME,
                _bound(settings.grpc_addr, port),
                "" if tls is None else " (mTLS)" if tls.client_ca else " (TLS)",
            )
            yield running
        finally:
            await running.stop(settings.shutdown_grace, settings.shutdown_drain)


def _expose_state(
    metrics: ServiceMetrics, budgeted: BudgetedUpstream, backend: CacheBackend
) -> None:
    """State other objects keep, read by the metrics at scrape time.

    Resilience state (retries, breaker, shed calls) belongs here too, read the
    same way from the attributes those objects keep (``metrics.gauge(name, doc,
    lambda: breaker.state ...)``). Stale answers are counted already:
    ``availability_answers_total{source="stale"}``.
    """
    budget = backend.budget
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
        metrics.gauge(
            "availability_redis_degraded",
            "1 while Redis is unreachable and this replica serves from its local tier.",
            lambda: float(tiered.degraded),
        )


def _interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    """Authentication first: an unauthenticated call is refused before its bytes are parsed."""
    secret = settings.api_tokens
    tokens = load_api_tokens(
        None if secret is None else secret.get_secret_value(), settings.api_tokens_file
    )
    if not len(tokens):
        logger.warning("no API tokens configured: any caller may call InvalidateSlots")
        return [MalformedRequestInterceptor()]
    logger.info("%d API token(s) configured: calls need 'authorization: Bearer'", len(tokens))
    return [AuthInterceptor(tokens), MalformedRequestInterceptor()]


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
    except TracingUnavailable as exc:
        logger.error("%s", exc)
        return 1
    except RuntimeError as exc:
        # grpc raises RuntimeError when the port cannot be bound.
        logger.error("cannot serve on %s: %s", settings.grpc_addr, exc)
        return 1
    except OSError as exc:
        # The HTTP port (bound first) is taken or not ours to bind.
        logger.error("cannot serve HTTP on %s: %s", settings.http_addr, exc.strerror or exc)
        return 1
    logger.info("stopped")
    return 0
