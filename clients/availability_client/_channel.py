"""The one channel a client owns: credentials, retries, keepalive, the bearer token.

Retries live in the channel's service config, not in a loop of ours: gRPC
then retries only attempts that provably did not reach a handler or that the
server answered with UNAVAILABLE, backs off with jitter, throttles retries
when most calls fail (so a fleet of agents cannot multiply an outage's load),
and keeps every attempt inside the call's one deadline. Both methods are
idempotent (a read, and an invalidation that is safe to repeat), so both
are retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc

from availability.v1 import availability_pb2 as pb

__all__ = [
    "KEEPALIVE_TIME_MS",
    "SERVICE_CONFIG",
    "TlsConfig",
    "bearer_metadata",
    "channel_options",
    "open_aio_channel",
    "open_channel",
]

_SERVICE = pb.DESCRIPTOR.services_by_name["AvailabilityService"]

SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            # Looked up in the descriptor: a renamed method fails here, not silently unretried.
            "name": [
                {"service": _SERVICE.full_name, "method": _SERVICE.methods_by_name[name].name}
                for name in ("GetSlots", "InvalidateSlots")
            ],
            "retryPolicy": {
                # Four retries fit a 1 s deadline: backoffs of at most 50, 100, 200, 400 ms.
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.4s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
    # Retries stop while more than about one call in ten fails, and resume as calls succeed.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}

KEEPALIVE_TIME_MS = 30_000
"""An idle connection is pinged this often, so a connection that a load balancer or NAT
dropped silently is noticed (and replaced) between calls, not by a voice turn's deadline.
The server accepts pings this frequent (``availability.server`` says so)."""


def channel_options() -> list[tuple[str, str | int]]:
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Keep pinging an idle connection: the default stops after two pings without data.
        ("grpc.http2.max_pings_without_data", 0),
    ]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for the channel: PEM bytes, as ``grpc.ssl_channel_credentials`` takes them.

    ``root_certificates`` None trusts the system's roots. A ``certificate_chain``
    with its ``private_key`` is presented to a server that requires client
    certificates (mTLS).
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("TlsConfig: give certificate_chain and private_key together")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def open_channel(target: str, tls: TlsConfig | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target, options=channel_options())
    return grpc.secure_channel(target, tls.credentials(), options=channel_options())


def open_aio_channel(target: str, tls: TlsConfig | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target, options=channel_options())
    return grpc.aio.secure_channel(target, tls.credentials(), options=channel_options())


def bearer_metadata(token: str | None) -> tuple[tuple[str, str | bytes], ...]:
    # As call metadata, not call credentials: gRPC refuses call credentials on a plaintext
    # channel, and a loopback deployment may use tokens without TLS.
    return () if token is None else (("authorization", f"Bearer {token}"),)
