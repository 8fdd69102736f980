"""TLS and mutual TLS on the gRPC port, with certificates made here for each test."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.server import RunningService, open_service
from tests.test_cli import AVAILABILITY, _env


@dataclass(frozen=True)
class Issued:
    cert: bytes
    key: bytes
    cert_path: Path
    key_path: Path


class Authority:
    """A throw-away CA that signs server and client certificates into ``directory``."""

    def __init__(self, directory: Path, name: str) -> None:
        self._directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.cert = (
            self._builder(self._name, self._key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.path = directory / f"{name}.pem"
        self.path.write_bytes(self.pem)

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )

    def issue(self, name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._builder(subject, key.public_key(), datetime.now(UTC))
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
        cert = builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_path, key_path = self._directory / f"{name}.crt", self._directory / f"{name}.key"
        cert_path.write_bytes(cert)
        key_path.write_bytes(key_pem)
        return Issued(cert, key_pem, cert_path, key_path)


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "test-ca")


@pytest.fixture
def server_cert(ca: Authority) -> Issued:
    return ca.issue("server", server=True)


async def serving(
    channel_credentials: grpc.ChannelCredentials, service: RunningService
) -> grpc.StatusCode:
    """The status of a health check over a fresh TLS channel."""
    async with grpc.aio.secure_channel(service.target, channel_credentials) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return grpc.StatusCode.OK


async def plaintext(service: RunningService) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(service.target) as channel:
        check: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/grpc.health.v1.Health/Check"
        )
        try:
            await check(b"", timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


@pytest.fixture
async def tls_service(
    settings: Settings, clock: ManualClock, server_cert: Issued
) -> AsyncIterator[RunningService]:
    tls = settings.model_copy(
        update={"tls_cert": server_cert.cert_path, "tls_key": server_cert.key_path}
    )
    async with open_service(tls, clock=clock) as service:
        yield service


async def test_tls(tls_service: RunningService, ca: Authority, tmp_path: Path) -> None:
    trusted = grpc.ssl_channel_credentials(root_certificates=ca.pem)
    assert await serving(trusted, tls_service) == grpc.StatusCode.OK
    stranger = Authority(tmp_path, "stranger-ca")
    untrusted = grpc.ssl_channel_credentials(root_certificates=stranger.pem)
    assert await serving(untrusted, tls_service) == grpc.StatusCode.UNAVAILABLE
    assert await plaintext(tls_service) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls(
    settings: Settings, clock: ManualClock, ca: Authority, server_cert: Issued, tmp_path: Path
) -> None:
    client = ca.issue("booking-service", server=False)
    impostor = Authority(tmp_path, "impostor-ca").issue("impostor", server=False)
    mtls = settings.model_copy(
        update={
            "tls_cert": server_cert.cert_path,
            "tls_key": server_cert.key_path,
            "tls_client_ca": ca.path,
        }
    )
    async with open_service(mtls, clock=clock) as service:

        def credentials(identity: Issued | None) -> grpc.ChannelCredentials:
            return grpc.ssl_channel_credentials(
                root_certificates=ca.pem,
                private_key=None if identity is None else identity.key,
                certificate_chain=None if identity is None else identity.cert,
            )

        assert await serving(credentials(client), service) == grpc.StatusCode.OK
        assert await serving(credentials(None), service) == grpc.StatusCode.UNAVAILABLE
        assert await serving(credentials(impostor), service) == grpc.StatusCode.UNAVAILABLE
        assert await plaintext(service) == grpc.StatusCode.UNAVAILABLE


def test_bad_tls_files_are_configuration_errors(
    ca: Authority, server_cert: Issued, tmp_path: Path
) -> None:
    other = ca.issue("other", server=True)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases: list[tuple[dict[str, object], str]] = [
        ({"tls_cert": tmp_path / "missing.crt", "tls_key": server_cert.key_path}, "tls_cert"),
        ({"tls_cert": server_cert.cert_path, "tls_key": tmp_path / "missing.key"}, "tls_key"),
        ({"tls_cert": server_cert.cert_path}, "tls_cert and tls_key"),
        ({"tls_cert": server_cert.cert_path, "tls_key": other.key_path}, "private key"),
        ({"tls_cert": garbage, "tls_key": server_cert.key_path}, "private key"),
        ({"tls_client_ca": ca.path}, "tls_client_ca needs"),
        (
            {
                "tls_cert": server_cert.cert_path,
                "tls_key": server_cert.key_path,
                "tls_client_ca": garbage,
            },
            "no PEM CA",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(ValidationError, match=message) as caught:
            Settings(**fields)  # type: ignore[arg-type]
        assert "PRIVATE KEY" not in str(caught.value)


def test_cli_exits_2_on_a_missing_certificate(server_cert: Issued, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            AVAILABILITY,
            "serve",
            "--tls-cert",
            str(tmp_path / "missing.crt"),
            "--tls-key",
            str(server_cert.key_path),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "tls_cert" in line
    assert "missing.crt" in line
