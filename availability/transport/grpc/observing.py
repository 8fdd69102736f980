"""Watching every RPC: go-grpc-prometheus counters, one canonical log line, a span.

There is no interceptor: grpc.aio runs every interceptor as a coroutine chain
on every call, which alone costs a fast-lane hit a good share of its time.
:class:`RpcObserver` wraps the handlers themselves instead, where they are
made: the service's own (:meth:`RpcObserver.wrap`, :meth:`RpcObserver.fast_lane`)
and whatever another generic handler returns (:meth:`RpcObserver.generic`:
health, reflection, and the refusals of methods nobody registered). So every
call that reaches a handler is counted and logged, refusals and aborts
included, and so are calls beyond ``max_concurrent_rpcs``, which the observer
refuses itself (grpc's own limiter would cost every call; fast-lane hits take
no slot). (Calls for an unknown method reach no handler.)

Per call it adds to plain numbers (:class:`~availability.adapters.observability.metrics.RpcCells`),
and, when its logger is enabled for the call's level, writes one line with the
method, status, duration and what the servicer added through :func:`annotate`
(event type, days, source, age, ...), the peer and a request id (the caller's
``x-request-id`` metadata, bounded, else one made here). With a tracer, unary
calls also get a SERVER span that continues the caller's W3C ``traceparent``.

The log policy, and why. A fast-lane hit (a repeated GetSlots answered from
its encoded response, :mod:`availability.transport.grpc.hit_memo`) is the
product and costs a few microseconds; formatting and writing its line costs
more than serving it. So fast-lane hits are counted like every call (started,
handled, the latency histogram, the cache's lookups and answers) but only one
in ``hit_log_every`` gets its INFO line, marked ``sampled=N`` (it stands for
N hits); each other hit logs at DEBUG, and one slower than
:data:`SLOW_HIT_SECONDS` at INFO. Every other call (misses, normal-path hits,
fresh reads, errors, refusals, invalidations) gets its line as before. With a
tracer, fast-lane hits take the fully watched path (a span and a line each):
tracing is for looking closely, not for the ceiling.

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
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import grpc
from google.protobuf import descriptor_pool

from availability.adapters.observability import tracing
from availability.adapters.observability.logs import caller_text, log_fields
from availability.adapters.observability.metrics import RpcCells, ServiceMetrics

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "CODE_NAMES",
    "SLOW_HIT_SECONDS",
    "FastHit",
    "FastLane",
    "RpcObserver",
    "annotate",
    "traced",
]

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


FastHit: TypeAlias = tuple[bytes, Mapping[str, Any], float]
"""A fast-lane answer: the response bytes, what its log line says about the request
(event type, days, fresh), and the age of its oldest bucket."""
FastLane: TypeAlias = Callable[[bytes], FastHit | None]
"""Answers a request's bytes from the fast lane without awaiting anything, or returns
None (the normal path then takes the call)."""

SLOW_HIT_SECONDS: Final = 0.01
"""A fast-lane hit this slow (a GC pause, a blocked loop: it awaits nothing) gets its
INFO line whatever the sampling: one always looks at slow calls."""


class RpcObserver:
    """Counts, logs and traces every call that reaches a handler it wrapped."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        logged_services: Collection[str] = (),
        tracer: Tracer | None = None,
        hit_log_every: int = 1,
        max_concurrent_rpcs: int | None = None,
    ) -> None:
        """RPCs of ``logged_services`` are logged at INFO, every other one (health
        checks every few seconds, reflection) at DEBUG. ``hit_log_every``: one fast-lane
        hit in this many logs at INFO (0: none; see the module's docstring).
        ``max_concurrent_rpcs``: calls inside the watched handlers at once; one more is
        answered RESOURCE_EXHAUSTED (counted and logged like every call). Enforced here
        rather than by grpc, whose limiter costs every call, hits included."""
        if hit_log_every < 0:
            raise ValueError("hit_log_every must not be negative")
        self._metrics = metrics
        self._logged = frozenset(logged_services)
        self._tracer = tracer
        self._hit_log_every = hit_log_every
        self._capacity = _Capacity(max_concurrent_rpcs)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}
        self._ids = _RequestIds()

    def generic(self, handler: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:
        """``handler``, every method handler it returns watched."""
        return _ObservedGeneric(self, handler)

    def fast_lane(
        self,
        method: str,
        handler: grpc.RpcMethodHandler[bytes, bytes],
        answer: FastLane,
        normal: Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]],
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        """A unary bytes-to-bytes method with a fast lane: ``answer`` first, counted and
        logged as the module's docstring says; when it returns None, ``normal`` (the
        rest of the method), watched like any call. ``handler``: the whole method (both
        in one), which is what runs, fully watched, when there is a tracer."""
        if self._tracer is not None:
            return self.wrap(method, handler)
        watcher = self._watcher(method, handler)
        cells = watcher.cells
        every = self._hit_log_every
        ids = self._ids
        slow = _unary(normal, watcher, None, method)
        perf_counter = time.perf_counter
        countdown = every

        async def lane(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            nonlocal countdown
            began = perf_counter()
            hit = answer(raw)
            if hit is None:
                result: bytes = await slow(raw, context)
                return result
            seconds = perf_counter() - began
            cells.served(seconds)
            countdown -= 1
            if countdown == 0:
                countdown = every
                _hit_line(logging.INFO, watcher, ids, context, seconds, hit, every)
            elif seconds >= SLOW_HIT_SECONDS:
                _hit_line(logging.INFO, watcher, ids, context, seconds, hit, None)
            elif logger.isEnabledFor(logging.DEBUG):
                _hit_line(logging.DEBUG, watcher, ids, context, seconds, hit, None)
            return hit[0]

        return grpc.unary_unary_rpc_method_handler(lane)

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` of full ``method`` name, counted, logged and traced."""
        watch = self._watcher(method, handler)
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

    def _watcher(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> _Watcher:
        service, _, name = method.lstrip("/").rpartition("/")
        return _Watcher(
            self._metrics.rpc(service, name, _grpc_type(service, name, handler)),
            service,
            name,
            logging.INFO if service in self._logged else logging.DEBUG,
            self._ids,
            self._capacity,
        )

    def _wrapped_once(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        # Generic handlers mostly return the same handler per method (health's,
        # reflection's): wrap each once. A refusal is a new handler every time; it is
        # wrapped for its one call.
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return wrapped
        wrapped = self.wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class _ObservedGeneric(grpc.GenericRpcHandler):
    def __init__(self, observer: RpcObserver, inner: grpc.GenericRpcHandler) -> None:
        self._observer = observer
        self._inner = inner

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        return self._observer._wrapped_once(handler_call_details.method, handler)


def _hit_line(
    level: int,
    watcher: _Watcher,
    ids: _RequestIds,
    context: grpc.aio.ServicerContext[Any, Any],
    seconds: float,
    hit: FastHit,
    sampled: int | None,
) -> None:
    """A fast-lane hit's line: the fields of the normal path's, and ``sampled``."""
    if not logger.isEnabledFor(level):
        return
    _, note, age = hit
    logger.log(
        level,
        "%s OK",
        watcher.method,
        extra=log_fields(
            service=watcher.service,
            method=watcher.method,
            status="OK",
            duration_ms=round(seconds * 1000, 3),
            **note,
            source="cache",
            age=round(age, 3),
            fast_lane=True,
            sampled=sampled,
            error=None,
            peer=context.peer(),
            request_id=_request_id(context) or ids.next(),
        ),
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


class _Capacity:
    """The bound on RPCs inside handlers at once, shared by every method watched.

    Fast-lane hits take no slot: they await nothing, so each is over before any
    other call runs, and refusing one would only turn away the cheapest answer."""

    __slots__ = ("active", "limit", "refusal")

    def __init__(self, limit: int | None) -> None:
        self.limit = sys.maxsize if limit is None else limit
        self.active = 0
        self.refusal = f"the server is serving {limit} calls at once; retry shortly"

    async def take(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A slot, or RESOURCE_EXHAUSTED at once (never a queue). ``active -= 1`` frees it."""
        if self.active >= self.limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.refusal)
        self.active += 1

    async def run(
        self,
        behavior: Callable[[Any, Any], Awaitable[Any]],
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Any:
        """``behavior`` in a slot, freed however it ends."""
        await self.take(context)
        try:
            return await behavior(request, context)
        finally:
            self.active -= 1


class _Watcher:
    """The per-method part: counters, log level, names."""

    __slots__ = ("capacity", "cells", "ids", "level", "method", "service")

    def __init__(
        self,
        cells: RpcCells,
        service: str,
        method: str,
        level: int,
        ids: _RequestIds,
        capacity: _Capacity,
    ) -> None:
        self.cells = cells
        self.service = service
        self.method = method
        self.level = level
        self.ids = ids
        self.capacity = capacity

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
    capacity = watcher.capacity
    if tracer is None:
        return _observed(behavior, watcher)

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
            return await capacity.run(behavior, request, context)

    return traced_call


def _observed(
    behavior: Callable[[Any, Any], Awaitable[Any]], watcher: _Watcher
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    capacity = watcher.capacity

    async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        with watcher.call(context, False):
            return await capacity.run(behavior, request, context)

    return observed


def _streaming(behavior: Callable[..., Any], watcher: _Watcher) -> Callable[..., Any]:
    """Streaming handlers come in two shapes (an async generator, or a coroutine that
    writes through the context): the wrapper keeps the shape grpc dispatches on."""
    capacity = watcher.capacity
    if inspect.isasyncgenfunction(behavior):

        async def generate(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with watcher.call(context, False):
                await capacity.take(context)
                try:
                    responses: AsyncIterator[Any] = behavior(request, context)
                    async for response in responses:
                        yield response
                finally:
                    capacity.active -= 1

        return generate

    return _observed(behavior, watcher)
