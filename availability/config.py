"""Configuration: environment variables ``AVAILABILITY_*``, overridden by CLI flags.

Everything has a default that runs on a laptop: gRPC on 127.0.0.1:50051, the
in-memory cache and, with no Cal.com URL, the built-in sandbox upstream.

Each setting is written once, as a field of :class:`Settings` with a docstring.
Everything a person reads about it is derived from that field by
:func:`setting_docs`: the ``availability serve`` flags and their help
(:mod:`availability.cli`) and the README's settings table (``python -m
availability.config`` prints it; ``scripts/settings-table`` writes it).
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import ipaddress
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretBytes, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from availability.adapters.observability.tracing import INSTALL_HINT as TRACING_INSTALL_HINT
from availability.transport.grpc.tls import TlsFiles
from availability.transport.grpc.tokens import load_api_tokens

__all__ = ["UVLOOP_INSTALL_HINT", "SettingDoc", "Settings", "setting_docs", "settings_table"]

UVLOOP_INSTALL_HINT = "pip install -e '.[uvloop]'"

Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AVAILABILITY_",
        extra="forbid",
        validate_default=True,
        # A rejected value may be a secret (a token, an API key): errors never echo it.
        hide_input_in_errors=True,
        # Each field's docstring is its description: the help and the README table read it.
        use_attribute_docstrings=True,
    )

    grpc_addr: str = "127.0.0.1:50051"
    """gRPC listen address, ``host:port``; port 0 picks a free one."""
    calcom_url: str | None = None
    """Cal.com API base, e.g. https://api.cal.com. Unset: start the built-in sandbox."""
    calcom_api_key: SecretStr | None = None
    """Cal.com API key: selects the rate-limit bucket, and learning an event type's hosts (to
    invalidate all their event types on a booking) needs it."""
    cache_url: str = "memory://"
    """Where buckets and versions live: ``memory://`` (this process) or
    ``redis[s]://[user:password@]host[:port][/db]`` (shared by every replica)."""
    cache_prefix: str = Field(default="av1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    """Prefix of every Redis key, so services can share a Redis."""
    local_cache_buckets: Annotated[int, Field(ge=0)] = 10_000
    """Bound (LRU, in buckets) of the in-process tier in front of Redis; 0 disables it."""
    local_trust: Annotated[float, Field(ge=0, le=5)] = 0.05
    """Seconds a replica serves its local copies without asking Redis after the read that
    confirmed their versions was sent; invalidations return this much after Redis took them.
    0: every read asks Redis."""
    hit_memo_entries: Annotated[int, Field(ge=0)] = 10_000
    """Bound (LRU) of the fast lane: repeated GetSlots requests answered from their encoded
    response without a cache read (with Redis, within ``local_trust``); 0 disables it."""
    memory_cache_entries: Annotated[int, Field(ge=1)] = 1_000_000
    """Bound of the ``memory://`` store, in entries (a cached day is about three: its bucket
    and its versions); past it the oldest writes are dropped (they are fetched again)."""
    calcom_rate_limit: Annotated[int, Field(ge=1)] = 120
    """Cal.com calls per minute for the whole cluster (Cal.com allows 120 per API key)."""
    budget_background_share: Annotated[float, Field(ge=0, le=1)] = 0.8
    """Share of ``calcom_rate_limit`` that background refreshes may use (they run only
    while a window's calls stay below it, so interactive misses keep the rest)."""

    ttl_policy: Literal["tiered", "adaptive"] = "tiered"
    """How a cached day's TTL is chosen: ``tiered`` (the three tier TTLs below, fixed) or
    ``adaptive`` (per event type and tier, from measured reads and unreported changes, within
    ``ttl_min``..``ttl_max``; the tier TTLs are where each tier starts)."""
    ttl_empty: Seconds = 30.0
    """Seconds a cached day with no slots is served before Cal.com is asked again (adaptive:
    until its reads and changes are measured)."""
    ttl_near: Seconds = 60.0
    """Seconds a cached day starting within ``ttl_near_days`` is served (adaptive: at first)."""
    ttl_far: Seconds = 300.0
    """Seconds a cached later day is served (adaptive: at first)."""
    ttl_near_days: Seconds = 7.0
    """A day starting sooner than this many days from now gets ``ttl_near``."""
    ttl_min: Seconds = 15.0
    """Adaptive policy: the shortest TTL it gives."""
    ttl_max: Seconds = 900.0
    """Adaptive policy: the longest TTL it gives."""
    ttl_stale_cost: Annotated[float, Field(gt=0)] = 150.0
    """Adaptive policy: how many Cal.com calls one stale answer (a slot offered that an
    unreported booking took) is worth; higher means shorter TTLs."""
    fetch_windows: bool = True
    """On a miss, fetch the whole window the day falls in with one Cal.com call: the near
    window (days starting within ``ttl_near_days``) or the far one (the days after it up to
    ``far_window_days``); off: only the days read."""
    far_window_days: Annotated[float, Field(ge=0)] = 30.0
    """The far window reaches the days starting within this many days from now."""
    refresh_ahead: Annotated[float, Field(ge=0, lt=1)] = 0.2
    """Last share of a bucket's TTL in which a read refreshes it (and its window) in the
    background on the budget's background share; 0: buckets just expire."""
    max_stale: Annotated[float, Field(ge=0)] = 300.0
    """Seconds past its TTL a bucket may be served, marked stale, while Cal.com is down."""
    max_range_days: Annotated[int, Field(ge=1, le=366)] = 90
    """Longest GetSlots range, days; longer ones get INVALID_ARGUMENT."""
    upstream_timeout: Seconds = 10.0
    """Bound on one shared Cal.com fetch, its retries included. A fetch is shared by every
    caller of its bucket and outlives the ones who give up (the next caller gets its
    answer), so it has its own bound: each caller waits for it only until its own deadline."""

    # -- when Cal.com misbehaves ---------------------------------------------------
    default_deadline: Seconds = 5.0
    """Seconds a call that sets no gRPC deadline may take."""
    deadline_reserve: Annotated[float, Field(ge=0, lt=1)] = 0.15
    """Share of the caller's remaining time kept for answering (serving stale, the trip
    back): the service answers by its deadline minus this, never DEADLINE_EXCEEDED."""
    deadline_reserve_min: Annotated[float, Field(ge=0)] = 0.05
    """The reserve's floor, seconds."""
    stale_wait: Annotated[float, Field(ge=0)] = 1.0
    """Longest a caller that has a stale bucket waits for its refresh, counted from when the
    refresh began (one voice turn); the refresh goes on in the background."""
    failure_memory: Annotated[float, Field(ge=0)] = 1.0
    """Seconds a failed fetch of a bucket is remembered: callers meanwhile share the failure
    (or their stale bucket) instead of calling Cal.com again. 0 disables it."""
    unknown_event_type_ttl: Annotated[float, Field(ge=0)] = 60.0
    """Seconds an event type Cal.com answered 404 for stays NOT_FOUND without asking again."""
    max_pending_misses: Annotated[int, Field(ge=1)] = 250
    """Reads waiting for Cal.com at once; past it a new miss gets RESOURCE_EXHAUSTED (or its
    stale bucket) at once, so the remaining RPC slots serve cache hits."""
    retry_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    """Attempts per Cal.com fetch, the first included (5xx, timeouts, connection errors and
    malformed bodies are retried; 4xx and 429 never)."""
    retry_budget: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Retries as a share of calls over a sliding 10 s (at least 5 per window)."""
    breaker_failures: Annotated[int, Field(ge=1)] = 5
    """Consecutive Cal.com failures that open the circuit breaker."""
    breaker_failure_ratio: Annotated[float, Field(gt=0, le=1)] = 0.75
    """Share of failed calls (at least 10 in 10 s) that opens the circuit breaker."""
    breaker_open_for: Seconds = 1.0
    """Seconds an opened breaker fails fast before one probe call; doubles after each
    failed probe up to ``breaker_open_max``."""
    breaker_open_max: Seconds = 8.0
    """Longest interval between probes of a failing Cal.com."""
    shutdown_grace: Annotated[float, Field(ge=0)] = 10.0
    """Seconds in-flight RPCs get to finish after SIGTERM/SIGINT."""
    shutdown_drain: Annotated[float, Field(ge=0)] = 1.0
    """Seconds between reporting NOT_SERVING and refusing new RPCs on shutdown."""
    sandbox_latency_min: Annotated[float, Field(ge=0)] = 0.3
    """Shortest simulated Cal.com latency of the built-in sandbox, seconds."""
    sandbox_latency_max: Annotated[float, Field(ge=0)] = 0.8
    """Longest simulated Cal.com latency of the built-in sandbox, seconds."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    log_format: Literal["text", "json"] = "text"
    """``json``: every log line is one JSON object (for a log pipeline), start-up included;
    ``text``: ``time level logger: message key=value ...``, for people."""
    tracing: bool = False
    """Emit OpenTelemetry spans (each RPC, its cache read, each Cal.com request) over
    OTLP/HTTP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables. Needs the
    ``tracing`` extra."""
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    """The event loop ``serve`` runs on: ``uvloop`` (the ``uvloop`` extra; about 40 % fewer
    instructions per cache hit), ``asyncio`` (the standard library's), or ``auto``: uvloop
    when it is installed, else asyncio."""
    hit_log_every: Annotated[int, Field(ge=0)] = 100
    """One fast-lane hit (a repeated GetSlots answered from its encoded response) in this
    many gets its INFO line, marked ``sampled=N``; the others are counted in the metrics
    like every RPC and logged at DEBUG. Every other RPC gets its line. 1: every hit; 0: none
    (slow ones still do)."""

    # -- exposure: who may call, and how much ------------------------------------
    http_addr: str = "127.0.0.1:8080"
    """HTTP listen address (Cal.com webhook, /healthz, /readyz), ``host:port``; port 0 picks a
    free one."""
    webhook_secret: SecretStr | None = None
    """The secret entered on Cal.com's webhook. Unset: the webhook answers 503."""
    webhook_max_body: Annotated[int, Field(ge=1024, le=64 * 2**20)] = 2**20
    """Largest webhook body accepted, bytes; larger ones get 413 unread."""
    api_tokens: SecretStr | None = None
    """Comma-separated ``token:role`` pairs; roles ``reader`` (GetSlots), ``writer`` (also
    InvalidateSlots). With no token here or in ``api_tokens_file`` every caller may do
    anything, so only loopback addresses are served unless ``insecure``."""
    api_tokens_file: Path | None = None
    """One ``token:role`` a line, ``#`` comment lines; adds to ``api_tokens``."""
    insecure: bool = False
    """Serve a non-loopback address without API tokens."""
    tls_cert: Path | None = None
    """PEM certificate chain for the gRPC port; with ``tls_key`` the port speaks only TLS."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    tls_client_ca: Path | None = None
    """PEM CA(s): when set, every gRPC client must present a certificate they signed (mTLS)."""
    max_message_bytes: Annotated[int, Field(ge=1024, le=2**30)] = 64 * 1024
    """Largest gRPC request message; larger ones get RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: Annotated[int, Field(ge=1)] = 1000
    """RPCs served at once; more get RESOURCE_EXHAUSTED at once instead of queueing. Fast-lane
    hits take no slot (they wait for nothing): they are answered even then."""

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

    @field_validator("event_loop", mode="before")
    @classmethod
    def _lower_event_loop(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("event_loop")
    @classmethod
    def _check_uvloop_installed(cls, value: str) -> str:
        if value == "uvloop" and not _installed("uvloop"):
            raise ValueError(f"uvloop is not installed: {UVLOOP_INSTALL_HINT}")
        return value

    @property
    def uvloop(self) -> bool:
        """Whether ``serve`` runs on uvloop (``event_loop``, resolved)."""
        return self.event_loop == "uvloop" or (self.event_loop == "auto" and _installed("uvloop"))

    @model_validator(mode="after")
    def _check_latency(self) -> Settings:
        if self.sandbox_latency_min > self.sandbox_latency_max:
            raise ValueError("sandbox_latency_min must not exceed sandbox_latency_max")
        return self

    @model_validator(mode="after")
    def _check_ttl_bounds(self) -> Settings:
        if self.ttl_min > self.ttl_max:
            raise ValueError("ttl_min must not exceed ttl_max")
        return self

    @model_validator(mode="after")
    def _check_breaker(self) -> Settings:
        if self.breaker_open_for > self.breaker_open_max:
            raise ValueError("breaker_open_for must not exceed breaker_open_max")
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


# -- how each setting reads to a person: the serve flags' help, the README's table ------------

_SECRET_TYPES = (SecretStr, SecretBytes)
# pydantic-settings reads these from the environment as JSON; a flag's value is read the same way.
_JSON_ORIGINS = (list, tuple, set, frozenset, dict)


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One field of :class:`Settings` as a person meets it: a flag, an env var, a table row."""

    name: str
    """The field, e.g. ``ttl_near``."""
    env_var: str
    """E.g. ``AVAILABILITY_TTL_NEAR``."""
    flag: str
    """E.g. ``--ttl-near``."""
    doc: str
    """The field's docstring as one paragraph (code in double backquotes)."""
    kind: Any
    """The value's type without ``None``: ``bool`` makes an on/off switch."""
    default: str | None
    """How the default reads (``60.0``, ``memory://``, ``off``); None when there is none."""
    secret: bool
    """A secret is never echoed: neither its default nor a value is ever shown."""
    json: bool
    """The value is written as JSON (a list, a mapping, a model), as in the environment."""


def setting_docs(settings_cls: type[BaseSettings] = Settings) -> tuple[SettingDoc, ...]:
    """Every field of ``settings_cls``, in declaration order."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    docs = []
    for name, field in settings_cls.model_fields.items():
        kind = _without_none(field.annotation)
        secret = isinstance(kind, type) and issubclass(kind, _SECRET_TYPES)
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        docs.append(
            SettingDoc(
                name=name,
                env_var=f"{prefix}{name}".upper(),
                flag="--" + name.replace("_", "-"),
                doc=" ".join(inspect.cleandoc(field.description or "").split()),
                kind=kind,
                default=None if default is None else _shown(default),
                secret=secret,
                json=typing.get_origin(kind) in _JSON_ORIGINS
                or (isinstance(kind, type) and issubclass(kind, BaseModel)),
            )
        )
    return tuple(docs)


def settings_table(docs: tuple[SettingDoc, ...] | None = None) -> str:
    """The README's settings table (Markdown), one row per setting."""
    rows = ["| variable (flag) | default | meaning |", "|---|---|---|"]
    for doc in setting_docs() if docs is None else docs:
        if doc.secret:
            default = "secret, never shown"
        elif doc.default is None:
            default = "unset"
        else:
            default = f"`{doc.default}`" if doc.default else '`""`'
        meaning = re.sub(r"``(.+?)``", r"`\1`", doc.doc).replace("|", r"\|")
        if doc.secret:
            meaning += " Secret: prefer the environment variable to the flag."
        rows.append(f"| `{doc.env_var}` (`{doc.flag}`) | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return annotation


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


if __name__ == "__main__":
    print(settings_table(), end="")
