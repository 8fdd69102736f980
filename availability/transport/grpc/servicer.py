"""The gRPC servicer: wire requests in, core calls, wire responses out.

Every failure leaves as a gRPC status with a message a caller can act on:
never a stack trace, never a secret. What a call asked for and got (event
type, days, source, age; an invalidation's reason and reach) goes into its
one log line through :func:`~availability.transport.grpc.observing.annotate`;
the :class:`~availability.transport.grpc.observing.RpcObserver` that wraps the
handlers (:class:`ServiceHandlers`) writes it. A fast-lane hit annotates nothing:
what its line would say comes back with the hit (:meth:`AvailabilityService.fast_answer`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from availability.adapters.observability.logs import caller_text
from availability.adapters.observability.metrics import ServiceMetrics
from availability.core.cache import SlotCache
from availability.core.local_days import DAY
from availability.core.ports import (
    BudgetExhausted,
    EventTypeNotFound,
    Overloaded,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from availability.transport.grpc.hit_memo import HitMemo
from availability.transport.grpc.observing import FastHit, RpcObserver, annotate, traced
from availability.transport.grpc.tokens import SERVICE_NAME, ApiTokens, Role
from availability.transport.grpc.validation import FieldViolation, invalidation_scope, slots_query
from availability.transport.grpc.wire import encode_days, encode_freshness
from availability.v1 import availability_pb2 as pb

__all__ = ["SERVICE_NAME", "AvailabilityService", "ClosedMethods", "ServiceHandlers"]

M = TypeVar("M", bound=Message)


# First match wins: BudgetExhausted and Overloaded are kinds of UpstreamUnavailable.
_UPSTREAM_CODES: dict[type[UpstreamError], grpc.StatusCode] = {
    BudgetExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UpstreamRejected: grpc.StatusCode.INVALID_ARGUMENT,
    EventTypeNotFound: grpc.StatusCode.NOT_FOUND,
    UpstreamAuthError: grpc.StatusCode.FAILED_PRECONDITION,
    UpstreamUnavailable: grpc.StatusCode.UNAVAILABLE,
}


_GET_SLOTS = f"/{SERVICE_NAME}/GetSlots"
_INVALIDATE_SLOTS = f"/{SERVICE_NAME}/InvalidateSlots"


class AvailabilityService:
    def __init__(
        self,
        cache: SlotCache,
        *,
        max_range_days: int,
        memo: HitMemo | None = None,
        tokens: ApiTokens | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        """``memo``: the fast lane for repeated reads (None: every read takes the normal
        path). ``tokens``: who may call what (None: anyone may)."""
        self._cache = cache
        self._max_range_days = max_range_days
        self._memo = memo
        self._tokens = tokens if tokens is not None and len(tokens) else None
        self._metrics = metrics

    @property
    def fast_lane(self) -> bool:
        """Whether repeated reads may be answered by :meth:`fast_answer`."""
        return self._memo is not None

    @property
    def tokens(self) -> ApiTokens | None:
        """Who may call what (None: anyone may call anything)."""
        return self._tokens

    def fast_answer(self, raw: bytes) -> FastHit | None:
        """The fast lane, for a caller already admitted (see :class:`ServiceHandlers`): a
        repeated request's response, with its note and age, or None: take the normal path
        (:meth:`read_slots`). Awaits nothing, so the caller may count it as one step."""
        memo = self._memo
        if memo is None:
            return None
        hit = memo.answer(raw, self._cache.generation)
        if hit is None:
            return None
        response, buckets, note, age = hit
        self._cache.reused(buckets, age)
        return response, note, age

    async def GetSlots(self, raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """The whole method, auth included: raw request bytes in (the fast lane is keyed by
        them), response bytes out."""
        if self._tokens is not None:
            await _authorize(self._tokens, context, _GET_SLOTS)
        return await self.admitted_get_slots(raw, context)

    async def admitted_get_slots(
        self, raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        """GetSlots for a caller the tokens admit: the fast lane, else the normal path."""
        hit = self.fast_answer(raw)
        if hit is not None:
            response, note, age = hit
            # The same fields as the normal path's line, from what the entry kept.
            annotate(**note, source="cache", age=round(age, 3), fast_lane=True)
            return response
        return await self.read_slots(raw, context)

    async def read_slots(
        self, raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        """GetSlots without the fast lane, for an admitted caller: parse, validate, read
        the cache (and keep what the fast lane may reuse)."""
        memo = self._memo
        request = await _parse(pb.GetSlotsRequest, raw, context)
        annotate(event_type_id=request.event_type_id)
        try:
            query = slots_query(request, max_range_days=self._max_range_days)
        except FieldViolation as violation:
            await _abort_invalid(context, violation)
        # Read before the read: an invalidation landing meanwhile voids what is kept.
        generation = self._cache.generation
        began = memo.monotonic() if memo is not None else 0.0
        try:
            with traced("SlotCache.get_slots"):
                answer = await self._cache.get_slots(query, timeout=self._timeout(context))
        except UpstreamError as exc:
            await _abort_upstream(context, exc, request.event_type_id)
        freshness = answer.freshness
        note = {
            "event_type_id": request.event_type_id,
            "days": math.ceil((query.end - query.start) / DAY),
            "fresh": query.fresh,
        }
        annotate(**note, source=freshness.source.value, age=round(freshness.age, 3))
        days = encode_days(answer)
        if memo is not None and not query.fresh:
            memo.keep(raw, answer, days, generation, began, note)
        return days + encode_freshness(freshness.source, freshness.fetched_at, freshness.age)

    async def InvalidateSlots(
        self, raw: bytes, context: grpc.aio.ServicerContext[bytes, pb.InvalidateSlotsResponse]
    ) -> pb.InvalidateSlotsResponse:
        if self._tokens is not None:
            await _authorize(self._tokens, context, _INVALIDATE_SLOTS)
        request = await _parse(pb.InvalidateSlotsRequest, raw, context)
        annotate(
            event_type_id=request.event_type_id or None,
            reason=caller_text(request.reason) if request.reason else None,
        )
        try:
            scope = invalidation_scope(request)
        except FieldViolation as violation:
            await _abort_invalid(context, violation)
        try:
            done = await self._cache.invalidate(scope, timeout=self._timeout(context))
        except UpstreamError as exc:
            # Whatever could be invalidated was; the caller retries (it is idempotent).
            self._count_invalidation()
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"could not learn the event type's hosts from Cal.com ({exc}); retry",
            )
        self._count_invalidation()
        annotate(
            days="all" if done.all_dates else len(done.dates),
            everything=done.everything,
            event_types=list(done.event_type_ids),
            hosts=list(done.host_ids),
        )
        return pb.InvalidateSlotsResponse(
            dates=[day.isoformat() for day in done.dates],
            all_dates=done.all_dates,
            event_type_ids=list(done.event_type_ids),
            host_ids=list(done.host_ids),
            everything=done.everything,
        )

    def _count_invalidation(self) -> None:
        if self._metrics is not None:
            self._metrics.invalidated("rpc")

    @staticmethod
    def _timeout(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
        """The caller's remaining time (None: no deadline). The core decides what to do
        with it: answer before it, minus a reserve (see availability.core.deadlines)."""
        remaining: float | None = context.time_remaining()
        return remaining


class ServiceHandlers(grpc.GenericRpcHandler):
    """The service's methods, as the server's first generic handler: GetSlots (with its
    fast lane in front) and InvalidateSlots, each watched by ``observer`` if given.

    GetSlots' auth is decided here, on the metadata grpc.aio has already made into a
    tuple for every generic handler (``HandlerCallDetails``): a caller the tokens admit
    gets a handler that checks nothing, so a fast-lane hit neither builds that tuple a
    second time (``context.invocation_metadata()`` makes a new one per call) nor looks
    at it. Any other caller gets the whole method, which refuses it the usual way
    (counted, logged, UNAUTHENTICATED or PERMISSION_DENIED). One lookup per call, as
    grpc's own dictionary handler makes.

    GetSlots takes and returns bytes (parsed and encoded by the servicer itself), so it
    has neither deserializer nor serializer.
    """

    def __init__(self, service: AvailabilityService, observer: RpcObserver | None = None) -> None:
        self._tokens = service.tokens
        whole: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            service.GetSlots
        )
        admitted: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            service.admitted_get_slots
        )
        invalidate: grpc.RpcMethodHandler[bytes, Any] = grpc.unary_unary_rpc_method_handler(
            service.InvalidateSlots,
            response_serializer=pb.InvalidateSlotsResponse.SerializeToString,
        )
        if observer is not None:
            whole = observer.wrap(_GET_SLOTS, whole)
            admitted = (
                observer.fast_lane(_GET_SLOTS, admitted, service.fast_answer, service.read_slots)
                if service.fast_lane
                else observer.wrap(_GET_SLOTS, admitted)
            )
            invalidate = observer.wrap(_INVALIDATE_SLOTS, invalidate)
        self._get_slots = whole
        self._admitted = admitted
        self._invalidate = invalidate

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method == _GET_SLOTS:
            tokens = self._tokens
            if tokens is None or tokens.admits(
                handler_call_details.invocation_metadata, Role.READER
            ):
                return self._admitted
            return self._get_slots
        if method == _INVALIDATE_SLOTS:
            return self._invalidate
        return None


class ClosedMethods(grpc.GenericRpcHandler):
    """Methods nobody registered: refused as auth would refuse them, else UNIMPLEMENTED.

    The server consults it after the service's own handlers (see open_service),
    so it costs the service's methods nothing. Without a token, an unknown method
    of the service looks like a known one (UNAUTHENTICATED): probing reveals nothing.
    """

    def __init__(self, tokens: ApiTokens | None) -> None:
        self._tokens = tokens if tokens is not None and len(tokens) else None

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        tokens = self._tokens
        if tokens is None:
            return None
        refusal = tokens.refusal(
            handler_call_details.invocation_metadata, handler_call_details.method
        )
        if refusal is None:
            return None
        code, message = refusal

        # Streaming and without a deserializer: refused before any message is read.
        async def refuse(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> None:
            await context.abort(code, message)

        return grpc.stream_stream_rpc_method_handler(refuse)


async def _authorize(
    tokens: ApiTokens, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> None:
    """Abort UNAUTHENTICATED or PERMISSION_DENIED unless the caller may call ``method``.

    First thing in a handler, before the request bytes are parsed.
    """
    # grpc.aio's Metadata iterates as (key, value) pairs; its stub does not say so.
    metadata: Any = context.invocation_metadata()
    refusal = tokens.refusal(metadata, method)
    if refusal is not None:
        await context.abort(*refusal)


async def _parse(kind: type[M], raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> M:
    """The request message; bytes that are none are the caller's error (INVALID_ARGUMENT,
    not the UNKNOWN grpc would answer had it parsed them)."""
    try:
        return kind.FromString(raw)
    except Exception:  # only parsing happens here: whatever fails, the bytes were bad
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid protobuf message"
        )


async def _abort_invalid(
    context: grpc.aio.ServicerContext[Any, Any], violation: FieldViolation
) -> NoReturn:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=violation.field, description=violation.description
                )
            ]
        )
    )
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(violation), details=[detail])
    )
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _abort_upstream(
    context: grpc.aio.ServicerContext[Any, Any], exc: UpstreamError, event_type_id: int
) -> NoReturn:
    code = next(
        (c for kind, c in _UPSTREAM_CODES.items() if isinstance(exc, kind)),
        grpc.StatusCode.UNAVAILABLE,
    )
    if code is grpc.StatusCode.NOT_FOUND:
        message = f"event_type_id: Cal.com has no event type {event_type_id}"
    else:
        message = f"Cal.com: {exc}"
    # Expected upstream trouble: the call's one log line says it (no traceback).
    await context.abort(code, message)
