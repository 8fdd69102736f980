"""Optional OpenTelemetry tracing: a span per RPC, per cache read and per Cal.com request.

Off by default (``AVAILABILITY_TRACING``), and the dependency is optional: the
``tracing`` extra (``pip install -e '.[tracing]'``). OpenTelemetry is imported
only here and only when tracing is enabled, so a service without it pays
nothing and needs nothing. Callers receive a :class:`Tracer` or ``None`` and
skip span code on ``None``.

Where spans go: a tracer provider configured by the process (e.g. by
``opentelemetry-instrument``) is used as is; otherwise the SDK's provider
exports over OTLP/HTTP, configured by the standard ``OTEL_EXPORTER_OTLP_*``
and ``OTEL_SERVICE_NAME`` variables (default ``http://localhost:4318``). Tests
and the demo pass their own provider.
"""

# OpenTelemetry is optional: every import of it is inside a function, reached only with
# tracing enabled.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "INSTALL_HINT",
    "TracingUnavailable",
    "client_span",
    "failed",
    "incoming_context",
    "internal_span",
    "open_tracer",
    "server_span",
]

INSTALL_HINT: Final = "pip install -e '.[tracing]'"

_INSTRUMENTATION = "availability"


class TracingUnavailable(RuntimeError):
    """Tracing is enabled but OpenTelemetry is not installed."""


def open_tracer(enabled: bool, provider: TracerProvider | None = None) -> Tracer | None:
    """The service's tracer, or None when tracing is off.

    Raises :class:`TracingUnavailable` (its message says how to install it) when
    tracing is on but OpenTelemetry is missing.
    """
    if not enabled:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise TracingUnavailable(
            f"tracing is enabled but OpenTelemetry is not installed: {INSTALL_HINT}"
        ) from None
    if provider is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):  # nobody configured one
            provider = _otlp_provider()
            trace.set_tracer_provider(provider)
    return provider.get_tracer(_INSTRUMENTATION)


def _otlp_provider() -> TracerProvider:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            f"tracing is enabled but the OpenTelemetry SDK or its OTLP exporter is not "
            f"installed: {INSTALL_HINT}"
        ) from None
    # Attributes given here win over the environment's: pass OTEL_SERVICE_NAME on.
    name = os.environ.get("OTEL_SERVICE_NAME") or "slot-availability"
    provider = SdkTracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def incoming_context(metadata: Mapping[str, Any]) -> Context:
    """The caller's trace context from W3C ``traceparent`` metadata (or none)."""
    from opentelemetry.propagate import extract

    return extract(metadata)


def server_span(
    tracer: Tracer, name: str, parent: Context | None, attributes: Mapping[str, Any]
) -> AbstractContextManager[Span]:
    """A SERVER span (an RPC we answer), the current span while the block runs."""
    from opentelemetry.trace import SpanKind

    return tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=dict(attributes)
    )


def client_span(
    tracer: Tracer, name: str, attributes: Mapping[str, Any]
) -> AbstractContextManager[Span]:
    """A CLIENT span (a request we send), the current span while the block runs."""
    from opentelemetry.trace import SpanKind

    return tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes))


def internal_span(
    tracer: Tracer, name: str, attributes: Mapping[str, Any]
) -> AbstractContextManager[Span]:
    """An INTERNAL span (e.g. the cache read inside an RPC)."""
    return tracer.start_as_current_span(name, attributes=dict(attributes))


def failed(span: Span, description: str) -> None:
    """Mark ``span`` as an error."""
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))
