"""Watching every RPC: go-grpc-prometheus counters, one canonical log line, a span.

:class:`ObservingInterceptor` is the first interceptor of the server, so the
handler it receives is whatever the rest of the chain decided: the method's
own, or another interceptor's refusal (UNAUTHENTICATED before the request is
parsed). It wraps that handler, so every call that reaches a handler is
counted and logged, refusals and aborts included. (Calls grpc itself turns
away, beyond ``maximum_concurrent_rpcs`` or for an unknown method, never reach
an interceptor.)

Per call it adds to plain numbers (:class:`~availability.adapters.observability.metrics.RpcCells`),
and, when its logger is enabled for the call's level, writes one line with the
method, status, duration and what the servicer added through :func:`annotate`
(event type, days, source, age, ...), the peer and a request id (the caller's
``x-request-id`` metadata, bounded, else one made here). With a tracer, unary
calls also get a SERVER span that continues the caller's W3C ``traceparent``.

Status names are go-grpc-prometheus' (``OK``, ``InvalidArgument``,
``Unauthenticated``, ...), in the metrics and in the log alike, so one can be
looked up in the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import descriptor_pool

from availability.adapters.observability import tracing
from availability.adapters.observability.logs import caller_text, log_fields
from availability.adapters.observability.metrics import RpcCells, ServiceMetrics

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = ["CODE_NAMES", "ObservingInterceptor", "annotate", "traced"]

logger = logging.getLogger("availability.rpc")

CODE_NAMES: Final[dict[grpc.StatusCode, str]] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
"""go-grpc-prometheus' ``grpc_code`` values (Go's ``codes.Code.String()``)."""
_CODE_NUMBERS: Final = {name: status.value[0] for status, name in CODE_NAMES.items()}

# The server's fault, or Cal.com's, or our key's: worth a WARNING. The rest is the caller's.
_WARN: Final = frozenset(
    {"Unknown", "Internal", "Unavailable", "DataLoss", "FailedPrecondition", "ResourceExhausted"}
)
_REQUEST_ID: Final = "x-request-id"
_REQUEST_ID_LIMIT: Final = 64

_current: ContextVar[_Record | None] = ContextVar("availability_rpc", default=None)


class _Record:
    """What one call's log line and span will say beyond method and status."""

    __slots__ = ("fields", "span", "tracer")

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.span: Span | None = None
        self.tracer: Tracer | None = None


def annotate(**fields: Any) -> None:
    """Add ``fields`` to the current RPC's log line (and span); nothing if it has none."""
    record = _current.get()
    if record is not None:
        record.fields.update(fields)
        if record.span is not None:
            record.span.set_attributes(
                {f"availability.{key}": value for key, value in fields.items() if value is not None}
            )


_NO_SPAN: Final = contextlib.nullcontext()


def traced(name: str) -> contextlib.AbstractContextManager[Any]:
    """An INTERNAL span named ``name`` under the current RPC's span, if it has one
    (e.g. the cache read); otherwise a context manager that does nothing."""
    record = _current.get()
    if record is None or record.tracer is None:
        return _NO_SPAN
    return tracing.internal_span(record.tracer, name, {})


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Counts, logs and traces every call that reaches a handler. Put it first."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        logged_services: Collection[str] = (),
        tracer: Tracer | None = None,
    ) -> None:
        """RPCs of ``logged_services`` are logged at INFO, every other one (health
        checks every few seconds, reflection) at DEBUG."""
        self._metrics = metrics
        self._logged = frozenset(logged_services)
        self._tracer = tracer
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}
        self._ids = _RequestIds()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        # Handlers repeat (the later interceptors cache theirs): wrap each once. A refusal
        # is a new handler every time; it is wrapped for its one call.
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return wrapped
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service, _, name = method.lstrip("/").rpartition("/")
        kind = _grpc_type(service, name, handler)
        watch = _Watcher(
            self._metrics.rpc(service, name, kind),
            service,
            name,
            logging.INFO if service in self._logged else logging.DEBUG,
            self._ids,
        )
        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behavior = _unary(handler.unary_unary, watch, self._tracer, method)
            return grpc.unary_unary_rpc_method_handler(behavior, **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, watch), **options
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _streaming(handler.stream_unary, watch), **options
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream, watch), **options
        )


def _grpc_type(service: str, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    """The method's type as its proto declares it. Not the handler's: a refusal is
    streaming whatever the method (it answers before reading a request)."""
    try:
        declared = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    except KeyError:
        client, server = handler.request_streaming, handler.response_streaming
    else:
        client, server = declared.client_streaming, declared.server_streaming
    if client and server:
        return "bidi_stream"
    if client:
        return "client_stream"
    if server:
        return "server_stream"
    return "unary"


class _RequestIds:
    """Ids for calls that bring none: a random prefix per process and a counter, so
    making one costs nothing and two processes' never collide in practice."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._count)}"


class _Watcher:
    """The per-method part: counters, log level, names."""

    __slots__ = ("cells", "ids", "level", "method", "service")

    def __init__(
        self, cells: RpcCells, service: str, method: str, level: int, ids: _RequestIds
    ) -> None:
        self.cells = cells
        self.service = service
        self.method = method
        self.level = level
        self.ids = ids

    def call(self, context: grpc.aio.ServicerContext[Any, Any], traced: bool) -> _Call:
        # A failure logs at WARNING whatever the method's level (INFO or DEBUG, both
        # lower): record the call whenever a line could come of it.
        return _Call(self, context, traced or logger.isEnabledFor(logging.WARNING))


class _Call:
    """One call, as a context manager around its handler: what ``__exit__`` sees (a
    return, an abort, a cancellation, a crash) decides the status it is counted with."""

    __slots__ = ("_context", "_record", "_started", "_token", "_watcher")

    def __init__(
        self, watcher: _Watcher, context: grpc.aio.ServicerContext[Any, Any], recorded: bool
    ) -> None:
        self._watcher = watcher
        self._context = context
        self._record = _Record() if recorded else None
        self._token: Token[_Record | None] | None = None
        self._started = 0.0

    @property
    def record(self) -> _Record | None:
        return self._record

    def __enter__(self) -> _Call:
        self._watcher.cells.started += 1
        if self._record is not None:
            self._token = _current.set(self._record)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        code = _code(self._context, exc)
        self._watcher.cells.finished(code, seconds)
        record = self._record
        if record is not None:
            if self._token is not None:
                _current.reset(self._token)
            self._finish(record, code, seconds)

    def _finish(self, record: _Record, code: str, seconds: float) -> None:
        watcher = self._watcher
        context = self._context
        error = None
        if code != "OK":
            details = context.details()
            error = caller_text(details if isinstance(details, str) else str(details or ""))
        if record.span is not None:
            record.span.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS[code])
            if code != "OK":
                tracing.failed(record.span, f"{code}: {error}")
        level = logging.WARNING if code in _WARN else watcher.level
        if not logger.isEnabledFor(level):
            return
        logger.log(
            level,
            "%s %s",
            watcher.method,
            code,
            extra=log_fields(
                service=watcher.service,
                method=watcher.method,
                status=code,
                duration_ms=round(seconds * 1000, 3),
                **record.fields,
                error=error,
                peer=context.peer(),
                request_id=_request_id(context) or watcher.ids.next(),
            ),
        )


def _code(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "Canceled"
    status = context.code()
    if status is not None:
        return CODE_NAMES.get(status, "Unknown")
    return "OK" if exc is None else "Unknown"  # grpc answers an escaped exception UNKNOWN


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == _REQUEST_ID:
            text = value if isinstance(value, str) else value.decode("latin-1")
            return caller_text(text, _REQUEST_ID_LIMIT)
    return None


def _unary(
    behavior: Callable[[Any, Any], Awaitable[Any]],
    watcher: _Watcher,
    tracer: Tracer | None,
    full_method: str,
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    if tracer is None:

        async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with watcher.call(context, False):
                return await behavior(request, context)

        return observed

    async def traced_call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        parent = tracing.incoming_context(dict(context.invocation_metadata() or ()))
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": watcher.service,
            "rpc.method": watcher.method,
        }
        with (
            tracing.server_span(tracer, full_method.lstrip("/"), parent, attributes) as span,
            watcher.call(context, True) as call,
        ):
            assert call.record is not None
            call.record.span = span
            call.record.tracer = tracer
            return await behavior(request, context)

    return traced_call


def _streaming(behavior: Callable[..., Any], watcher: _Watcher) -> Callable[..., Any]:
    """Streaming handlers come in two shapes (an async generator, or a coroutine that
    writes through the context): the wrapper keeps the shape grpc dispatches on."""
    if inspect.isasyncgenfunction(behavior):

        async def generate(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with watcher.call(context, False):
                responses: AsyncIterator[Any] = behavior(request, context)
                async for response in responses:
                    yield response

        return generate

    async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        with watcher.call(context, False):
            return await behavior(request, context)

    return run
