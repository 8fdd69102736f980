"""The HTTP port: Cal.com's webhook and the probes of an orchestrator.

``GET /healthz`` answers 200 while the process's event loop runs (liveness);
``GET /readyz`` answers 200 only while the gRPC service reports SERVING, so a
load balancer stops routing here as soon as shutdown begins (readiness). Both
are unauthenticated and say nothing beyond that.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from availability.transport.http.webhooks import CalcomWebhooks

__all__ = ["WEBHOOK_PATH", "http_app"]

WEBHOOK_PATH = "/webhooks/calcom"


def http_app(webhooks: CalcomWebhooks, *, ready: Callable[[], bool]) -> Starlette:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not serving\n", status_code=503)

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhooks.endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
