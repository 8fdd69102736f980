"""The gRPC servicer: wire requests in, core calls, wire responses out.

Every failure leaves as a gRPC status with a message a caller can act on:
never a stack trace, never a secret. What a call asked for and got (event
type, days, source, age; an invalidation's reason and reach) goes into its
one log line through :func:`~availability.transport.grpc.observing.annotate`;
the interceptor writes it.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
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
from availability.transport.grpc.observing import annotate, traced
from availability.transport.grpc.validation import FieldViolation, invalidation_scope, slots_query
from availability.transport.grpc.wire import encode_slots_response
from availability.v1 import availability_pb2 as pb

__all__ = ["SERVICE_NAME", "AvailabilityService", "rpc_handlers"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvailabilityService"].full_name


# First match wins: BudgetExhausted and Overloaded are kinds of UpstreamUnavailable.
_UPSTREAM_CODES: dict[type[UpstreamError], grpc.StatusCode] = {
    BudgetExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UpstreamRejected: grpc.StatusCode.INVALID_ARGUMENT,
    EventTypeNotFound: grpc.StatusCode.NOT_FOUND,
    UpstreamAuthError: grpc.StatusCode.FAILED_PRECONDITION,
    UpstreamUnavailable: grpc.StatusCode.UNAVAILABLE,
}


class AvailabilityService:
    def __init__(
        self, cache: SlotCache, *, max_range_days: int, metrics: ServiceMetrics | None = None
    ) -> None:
        self._cache = cache
        self._max_range_days = max_range_days
        self._metrics = metrics

    async def GetSlots(
        self,
        request: pb.GetSlotsRequest,
        context: grpc.aio.ServicerContext[pb.GetSlotsRequest, pb.GetSlotsResponse],
    ) -> bytes:
        annotate(event_type_id=request.event_type_id)
        try:
            query = slots_query(request, max_range_days=self._max_range_days)
        except FieldViolation as violation:
            await _abort_invalid(context, violation)
        try:
            with traced("SlotCache.get_slots"):
                answer = await self._cache.get_slots(query, timeout=self._timeout(context))
        except UpstreamError as exc:
            await _abort_upstream(context, exc, request.event_type_id)
        freshness = answer.freshness
        annotate(
            days=math.ceil((query.end - query.start) / DAY),
            fresh=query.fresh,
            source=freshness.source.value,
            age=round(freshness.age, 3),
        )
        return encode_slots_response(answer)

    async def InvalidateSlots(
        self,
        request: pb.InvalidateSlotsRequest,
        context: grpc.aio.ServicerContext[pb.InvalidateSlotsRequest, pb.InvalidateSlotsResponse],
    ) -> pb.InvalidateSlotsResponse:
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


def rpc_handlers(service: AvailabilityService) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The service's method handlers. GetSlots answers with bytes assembled from
    per-bucket encodings, so its serializer passes them through."""
    return {
        "GetSlots": grpc.unary_unary_rpc_method_handler(
            service.GetSlots,
            request_deserializer=pb.GetSlotsRequest.FromString,
            response_serializer=_as_is,
        ),
        "InvalidateSlots": grpc.unary_unary_rpc_method_handler(
            service.InvalidateSlots,
            request_deserializer=pb.InvalidateSlotsRequest.FromString,
            response_serializer=pb.InvalidateSlotsResponse.SerializeToString,
        ),
    }


def _as_is(data: bytes) -> bytes:
    return data


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
