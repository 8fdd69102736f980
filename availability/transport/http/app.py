"""The HTTP port: Cal.com's webhook, the probes of an orchestrator, and the metrics.

``GET /healthz`` answers 200 while the process's event loop runs (liveness);
``GET /readyz`` answers 200 only while the gRPC service reports SERVING, so a
load balancer stops routing here as soon as shutdown begins (readiness). Both
are unauthenticated and say nothing beyond that.

``GET /metrics`` is the service's Prometheus exposition (see
:mod:`availability.adapters.observability.metrics`): no secret and no id in it,
but only ``/webhooks/calcom`` needs to be reachable from outside.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from availability.adapters.observability.metrics import ServiceMetrics
from availability.transport.http.webhooks import CalcomWebhooks

__all__ = ["METRICS_PATH", "WEBHOOK_PATH", "http_app"]

WEBHOOK_PATH = "/webhooks/calcom"
METRICS_PATH = "/metrics"


def http_app(
    webhooks: CalcomWebhooks, *, ready: Callable[[], bool], metrics: ServiceMetrics
) -> Starlette:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not serving\n", status_code=503)

    async def exposition(request: Request) -> Response:
        body, content_type = await metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhooks.endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route(METRICS_PATH, exposition, methods=["GET"]),
        ]
    )
