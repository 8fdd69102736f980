"""Configuration: environment variables ``AVAILABILITY_*``, overridden by CLI flags.

Everything has a default that runs on a laptop: gRPC on 127.0.0.1:50051, the
in-memory cache and, with no Cal.com URL, the built-in sandbox upstream.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from availability.adapters.observability.tracing import INSTALL_HINT as TRACING_INSTALL_HINT
from availability.transport.grpc.tls import TlsFiles
from availability.transport.grpc.tokens import load_api_tokens

__all__ = ["Settings"]

Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AVAILABILITY_",
        extra="forbid",
        validate_default=True,
        # A rejected value may be a secret (a token, an API key): errors never echo it.
        hide_input_in_errors=True,
    )

    grpc_addr: str = "127.0.0.1:50051"
    """host:port to listen on; port 0 picks a free one."""
    calcom_url: str | None = None
    """Cal.com API base, e.g. https://api.cal.com. Unset: start the built-in sandbox."""
    calcom_api_key: SecretStr | None = None
    cache_url: str = "memory://"
    """Where buckets and versions live: memory:// (this process) or redis[s]://... (shared)."""
    cache_prefix: str = Field(default="av1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    """Prefix of every Redis key, so services can share a Redis."""
    local_cache_buckets: Annotated[int, Field(ge=0)] = 10_000
    """Bound on the in-process tier in front of Redis (buckets, LRU)."""
    calcom_rate_limit: Annotated[int, Field(ge=1)] = 120
    """Cal.com calls per minute for the whole cluster (Cal.com allows 120 per API key)."""

    ttl_empty: Seconds = 30.0
    ttl_near: Seconds = 60.0
    ttl_far: Seconds = 300.0
    ttl_near_days: Seconds = 7.0
    max_stale: Annotated[float, Field(ge=0)] = 300.0
    """How long past its TTL a bucket may be served, marked stale, while Cal.com is down."""
    max_range_days: Annotated[int, Field(ge=1, le=366)] = 90
    upstream_timeout: Seconds = 10.0
    """Bound on one Cal.com call when the caller sets no deadline."""
    shutdown_grace: Annotated[float, Field(ge=0)] = 10.0
    """Seconds in-flight RPCs get to finish after SIGTERM/SIGINT."""
    shutdown_drain: Annotated[float, Field(ge=0)] = 1.0
    """Seconds between reporting NOT_SERVING and refusing new RPCs on shutdown."""
    sandbox_latency_min: Annotated[float, Field(ge=0)] = 0.3
    sandbox_latency_max: Annotated[float, Field(ge=0)] = 0.8
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """``json``: every log line is one JSON object (for a log pipeline), start-up included;
    ``text``: ``time level logger: message key=value ...``, for people."""
    tracing: bool = False
    """Emit OpenTelemetry spans (each RPC, its cache read, each Cal.com request) over
    OTLP/HTTP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables. Needs the
    ``tracing`` extra."""

    # -- exposure: who may call, and how much ------------------------------------
    http_addr: str = "127.0.0.1:8080"
    """host:port of the HTTP port (Cal.com webhook, /healthz, /readyz); port 0 picks a free one."""
    webhook_secret: SecretStr | None = None
    """The secret entered on Cal.com's webhook. Unset: the webhook answers 503."""
    webhook_max_body: Annotated[int, Field(ge=1024, le=64 * 2**20)] = 2**20
    """Largest webhook body accepted, bytes; larger ones get 413 unread."""
    api_tokens: SecretStr | None = None
    """Comma-separated ``token:role`` pairs; roles ``reader`` (GetSlots), ``writer`` (also
    InvalidateSlots). None here or in ``api_tokens_file``: every caller may do anything, so
    only loopback addresses are served unless ``insecure``."""
    api_tokens_file: Path | None = None
    """One ``token:role`` a line, ``#`` comment lines; adds to ``api_tokens``."""
    insecure: bool = False
    """Serve a non-loopback address without API tokens."""
    tls_cert: Path | None = None
    """PEM certificate chain for the gRPC port; with ``tls_key`` the port speaks only TLS."""
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """PEM CA(s): when set, every gRPC client must present a certificate they signed (mTLS)."""
    max_message_bytes: Annotated[int, Field(ge=1024, le=2**30)] = 64 * 1024
    """Largest gRPC request message; larger ones get RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: Annotated[int, Field(ge=1)] = 1000
    """RPCs served at once; more get RESOURCE_EXHAUSTED at once instead of queueing."""

    @field_validator("grpc_addr", "http_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @field_validator("calcom_url")
    @classmethod
    def _check_calcom_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("cache_url")
    @classmethod
    def _check_cache_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "memory":
            return value
        if parts.scheme in ("redis", "rediss") and parts.hostname:
            return value
        # Never echo the URL: it may carry a password.
        raise ValueError("expected memory:// or redis[s]://[user:password@]host[:port][/db]")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("tracing")
    @classmethod
    def _check_tracing_installed(cls, value: bool) -> bool:
        if value and not _installed("opentelemetry.sdk"):
            raise ValueError(f"OpenTelemetry is not installed: {TRACING_INSTALL_HINT}")
        return value

    @model_validator(mode="after")
    def _check_latency(self) -> Settings:
        if self.sandbox_latency_min > self.sandbox_latency_max:
            raise ValueError("sandbox_latency_min must not exceed sandbox_latency_max")
        return self

    @field_validator("webhook_secret", "api_tokens")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("api_tokens_file", "tls_cert", "tls_key", "tls_client_ca", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_tokens_file", "tls_cert", "tls_key", "tls_client_ca")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                with value.open("rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot read {str(value)!r}: {exc.strerror}") from None
        return value

    @model_validator(mode="after")
    def _check_exposure(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        if self.tls_cert is not None and self.tls_key is not None:
            try:
                TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca).check()
            except ValueError as exc:
                raise ValueError(f"tls: {exc}") from None
        api_tokens = None if self.api_tokens is None else self.api_tokens.get_secret_value()
        tokens = load_api_tokens(api_tokens, self.api_tokens_file)
        if not len(tokens) and not self.insecure:
            for name, addr in (("grpc_addr", self.grpc_addr), ("http_addr", self.http_addr)):
                if not _is_loopback(addr):
                    raise ValueError(
                        f"{name} {addr} is reachable from other machines, but no API tokens "
                        "are configured: set AVAILABILITY_API_TOKENS or "
                        "AVAILABILITY_API_TOKENS_FILE (or --insecure to serve it open)"
                    )
        return self


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _is_loopback(addr: str) -> bool:
    host = addr.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
