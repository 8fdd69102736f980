"""Assemble and run the service: upstream, cache, gRPC server, health, reflection.

Lifecycle: health reports SERVING for "" and the service name once the port
is bound; SIGTERM/SIGINT flips it to NOT_SERVING (load balancers stop
sending), in-flight RPCs get ``shutdown_grace`` seconds to finish, then the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from availability.budget import BudgetedUpstream
from availability.cache import SlotCache
from availability.cache_backend import open_cache_backend
from availability.calcom import CalcomUpstream
from availability.clock import Clock, system_clock
from availability.config import Settings
from availability.keys import KeySchema
from availability.sandbox import serve_sandbox
from availability.service import AvailabilityService
from availability.ttl import TieredTtl
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc

__all__ = ["RunningService", "open_service", "run"]

logger = logging.getLogger("availability")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvailabilityService"].full_name


@dataclass(frozen=True, slots=True)
class RunningService:
    port: int
    """The bound gRPC port (useful with port 0)."""
    cache: SlotCache
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    calcom_url: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

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
    settings: Settings, *, clock: Clock = system_clock
) -> AsyncIterator[RunningService]:
    """Run the whole service until the block exits (then stop with the configured grace)."""
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
        api_key = settings.calcom_api_key
        upstream = CalcomUpstream(
            calcom_url,
            api_key=None if api_key is None else api_key.get_secret_value(),
            default_timeout=settings.upstream_timeout,
        )
        stack.push_async_callback(upstream.aclose)
        backend = await stack.enter_async_context(
            open_cache_backend(
                settings.cache_url,
                clock=clock,
                rate_limit=settings.calcom_rate_limit,
                prefix=settings.cache_prefix,
                max_local_buckets=settings.local_cache_buckets,
            )
        )
        cache = SlotCache(
            BudgetedUpstream(upstream, backend.budget),
            backend.store,
            clock=clock,
            keys=KeySchema(settings.cache_prefix),
            lease_ttl=settings.upstream_timeout,
            ttl=TieredTtl(
                empty=settings.ttl_empty,
                near=settings.ttl_near,
                far=settings.ttl_far,
                near_days=settings.ttl_near_days,
            ),
            max_stale=settings.max_stale,
        )
        stack.push_async_callback(cache.close)

        server = grpc.aio.server()
        pb_grpc.add_AvailabilityServiceServicer_to_server(
            AvailabilityService(
                cache,
                max_range_days=settings.max_range_days,
                upstream_timeout=settings.upstream_timeout,
            ),
            server,
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port = server.add_insecure_port(settings.grpc_addr)
        await server.start()
        running = RunningService(port, cache, server, health_servicer, calcom_url)
        try:
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
            logger.info("serving %s on %s", SERVICE_NAME, _bound(settings.grpc_addr, port))
            yield running
        finally:
            await running.stop(settings.shutdown_grace, settings.shutdown_drain)


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
    except RuntimeError as exc:
        # grpc raises RuntimeError when the port cannot be bound.
        logger.error("cannot serve on %s: %s", settings.grpc_addr, exc)
        return 1
    logger.info("stopped")
    return 0
