"""The channel a client owns: retries from the service config, deadlines, keepalive, TLS.

grpcio-testing cannot show retries: they happen inside a real channel. So
these tests put a real gRPC server on loopback in front of the real service,
a front that answers the first calls with a chosen status (or never) and
forwards the rest, and count the attempts that reach it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.server import KEEPALIVE_ACCEPTED, RunningService, open_service
from availability.transport.grpc.servicer import SERVICE_NAME
from availability_client import (
    AgentClient,
    AsyncAgentClient,
    AsyncBookingClient,
    BookingClient,
    DeadlineExceeded,
    InvalidArgument,
    RateLimited,
    TlsConfig,
    Unavailable,
)
from availability_client._channel import KEEPALIVE_TIME_MS, SERVICE_CONFIG, channel_options
from tests.conftest import NOW
from tests.transport.grpc.test_tls import Authority, Issued

DAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))
BOOKED = (NOW + timedelta(days=1, hours=8), NOW + timedelta(days=1, hours=8, minutes=30))


@dataclass
class Front:
    """A real gRPC server that fails the first ``failures`` calls of each method with
    ``code`` (every call, with ``failures`` None; ``code`` None: never answers them),
    then forwards the rest, bytes as they are, to the real service."""

    upstream: grpc.aio.Channel
    code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
    failures: int | None = 0
    attempts: dict[str, int] = field(default_factory=dict)
    target: str = ""
    _never: asyncio.Event = field(default_factory=asyncio.Event)

    def handler(self, method: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        forward: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.upstream.unary_unary(
            f"/{SERVICE_NAME}/{method}"
        )

        async def handle(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            self.attempts[method] = attempt = self.attempts.get(method, 0) + 1
            if self.failures is None or attempt <= self.failures:
                if self.code is None:
                    await self._never.wait()
                else:
                    await context.abort(self.code, f"the front says {self.code.name}")
            response: bytes = await forward(request, timeout=context.time_remaining())
            return response

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
async def front(service: RunningService) -> AsyncIterator[Front]:
    async with grpc.aio.insecure_channel(service.target) as upstream:
        front = Front(upstream)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE_NAME,
                    {m: front.handler(m) for m in ("GetSlots", "InvalidateSlots")},
                ),
            )
        )
        front.target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        yield front
        front._never.set()
        await server.stop(0)


def agent_read(client: AgentClient | AsyncAgentClient, **kwargs: Any) -> Any:
    return client.get_slots(1001, *DAY, **kwargs)


def booking_report(client: BookingClient | AsyncBookingClient, **kwargs: Any) -> Any:
    return client.booking_created(1001, *BOOKED, **kwargs)


Flavour = Callable[..., Awaitable[Any]]


async def call_sync(front: Front, method: str, **kwargs: Any) -> Any:
    if method == "GetSlots":
        with AgentClient(front.target) as agent:
            return await asyncio.to_thread(agent_read, agent, **kwargs)
    with BookingClient(front.target) as booking:
        return await asyncio.to_thread(booking_report, booking, **kwargs)


async def call_async(front: Front, method: str, **kwargs: Any) -> Any:
    if method == "GetSlots":
        async with AsyncAgentClient(front.target) as agent:
            return await agent_read(agent, **kwargs)
    async with AsyncBookingClient(front.target) as booking:
        return await booking_report(booking, **kwargs)


FLAVOURS = pytest.mark.parametrize("call", [call_sync, call_async], ids=["sync", "async"])
METHODS = pytest.mark.parametrize("method", ["GetSlots", "InvalidateSlots"])


@FLAVOURS
@METHODS
async def test_unavailable_is_retried_within_the_deadline(
    front: Front, call: Flavour, method: str
) -> None:
    front.failures = 2
    result = await call(front, method)
    assert front.attempts == {method: 3}
    if method == "GetSlots":
        assert result.days  # the real service's answer, through the third attempt
    else:
        assert 1001 in result.event_type_ids


@FLAVOURS
async def test_retries_stop_after_five_attempts_and_throttle(front: Front, call: Flavour) -> None:
    front.failures = None

    async def twice() -> None:
        if call is call_sync:
            with AgentClient(front.target) as agent:
                for _ in range(2):
                    with pytest.raises(Unavailable, match="the front says UNAVAILABLE"):
                        await asyncio.to_thread(agent_read, agent, timeout=10)
            return
        async with AsyncAgentClient(front.target) as agent:
            for _ in range(2):
                with pytest.raises(Unavailable, match="the front says UNAVAILABLE"):
                    await agent_read(agent, timeout=10)

    await twice()
    # 5 attempts for the first call; the second finds most recent attempts failed and is
    # not retried at all (retry throttling), so an outage is not multiplied by five.
    assert front.attempts == {"GetSlots": 6}


@FLAVOURS
@METHODS
@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimited),
    ],
)
async def test_other_statuses_are_not_retried(
    front: Front, call: Flavour, method: str, code: grpc.StatusCode, error: type[Exception]
) -> None:
    front.code, front.failures = code, 1
    with pytest.raises(error):
        await call(front, method)
    assert front.attempts == {method: 1}


@FLAVOURS
@METHODS
async def test_a_call_ends_at_its_deadline(front: Front, call: Flavour, method: str) -> None:
    front.code, front.failures = None, None
    with pytest.raises(DeadlineExceeded):
        await call(front, method, timeout=0.2)
    assert front.attempts == {method: 1}


def test_the_service_config_retries_both_methods_on_unavailable_only() -> None:
    options = dict(channel_options())
    assert options["grpc.enable_retries"] == 1
    assert json.loads(str(options["grpc.service_config"])) == SERVICE_CONFIG
    [method_config] = SERVICE_CONFIG["methodConfig"]
    assert {(n["service"], n["method"]) for n in method_config["name"]} == {
        (SERVICE_NAME, "GetSlots"),
        (SERVICE_NAME, "InvalidateSlots"),
    }
    policy = method_config["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    # Every backoff of the five attempts together fits one voice turn's 1 s deadline.
    backoffs, backoff = 0.0, float(policy["initialBackoff"].rstrip("s"))
    for _ in range(policy["maxAttempts"] - 1):
        backoffs += min(backoff, float(policy["maxBackoff"].rstrip("s")))
        backoff *= policy["backoffMultiplier"]
    assert backoffs < AgentClient.default_timeout


def test_the_server_accepts_the_clients_keepalive_pings() -> None:
    """A server that refused them would close idle client connections with GOAWAY."""
    options = dict(channel_options())
    accepted = dict(KEEPALIVE_ACCEPTED)
    assert options["grpc.keepalive_time_ms"] == KEEPALIVE_TIME_MS
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert accepted["grpc.keepalive_permit_without_calls"] == 1
    assert accepted["grpc.http2.min_ping_interval_without_data_ms"] <= KEEPALIVE_TIME_MS


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "test-ca")


@pytest.fixture
async def mtls_service(
    settings: Settings, clock: ManualClock, ca: Authority
) -> AsyncIterator[RunningService]:
    server_cert = ca.issue("server", server=True)
    mtls = settings.model_copy(
        update={
            "tls_cert": server_cert.cert_path,
            "tls_key": server_cert.key_path,
            "tls_client_ca": ca.path,
        }
    )
    async with open_service(mtls, clock=clock) as service:
        yield service


def identity(ca: Authority, issued: Issued | None) -> TlsConfig:
    if issued is None:
        return TlsConfig(root_certificates=ca.pem)
    return TlsConfig(ca.pem, certificate_chain=issued.cert, private_key=issued.key)


async def test_mutual_tls(mtls_service: RunningService, ca: Authority, tmp_path: Path) -> None:
    client = identity(ca, ca.issue("agent-backend", server=False))
    async with AsyncAgentClient(mtls_service.target, tls=client) as agent:
        assert (await agent.get_slots(1001, *DAY)).days
    with AgentClient(mtls_service.target, tls=client) as sync_agent:
        assert (await asyncio.to_thread(agent_read, sync_agent)).days

    stranger = identity(Authority(tmp_path, "stranger-ca"), None)
    forged = Authority(tmp_path, "impostor-ca").issue("impostor", server=False)
    impostor = TlsConfig(ca.pem, certificate_chain=forged.cert, private_key=forged.key)
    for refused in (identity(ca, None), stranger, impostor, None):
        async with AsyncAgentClient(mtls_service.target, tls=refused, timeout=5) as agent:
            with pytest.raises(Unavailable):
                await agent.get_slots(1001, *DAY)


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="together"):
        TlsConfig(certificate_chain=b"chain")
    with pytest.raises(ValueError, match="together"):
        TlsConfig(private_key=b"key")
