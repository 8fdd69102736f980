"""Configuration: environment variables ``AVAILABILITY_*``, overridden by CLI flags.

Everything has a default that runs on a laptop: gRPC on 127.0.0.1:50051, the
in-memory cache and, with no Cal.com URL, the built-in sandbox upstream.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AVAILABILITY_", extra="forbid", validate_default=True
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

    @field_validator("grpc_addr")
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

    @model_validator(mode="after")
    def _check_latency(self) -> Settings:
        if self.sandbox_latency_min > self.sandbox_latency_max:
            raise ValueError("sandbox_latency_min must not exceed sandbox_latency_max")
        return self
