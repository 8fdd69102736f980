"""gRPC health, whose state also answers the HTTP readiness probe."""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2

from availability.transport.grpc.servicer import SERVICE_NAME

__all__ = ["HEALTH_SERVICE_NAME", "HealthServicer"]

HEALTH_SERVICE_NAME = health.SERVICE_NAME


class HealthServicer(health.aio.HealthServicer):
    """gRPC health, whose state also answers the HTTP readiness probe."""

    def __init__(self) -> None:
        super().__init__()
        self._serving: set[str] = set()
        self._closing = False

    async def set(self, service: str, status: int) -> None:
        await super().set(service, status)
        if self._closing:
            return  # the parent ignores changes after shutdown began, and so do we
        if status == health_pb2.HealthCheckResponse.SERVING:
            self._serving.add(service)
        else:
            self._serving.discard(service)

    async def enter_graceful_shutdown(self) -> None:
        self._closing = True
        self._serving.clear()
        await super().enter_graceful_shutdown()

    def serving(self, service: str = SERVICE_NAME) -> bool:
        return service in self._serving
