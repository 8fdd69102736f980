"""The gRPC servicer: wire requests in, core calls, wire responses out.

Every failure leaves as a gRPC status with a message a caller can act on:
never a stack trace, never a secret.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from availability.budget import BudgetExhausted
from availability.cache import SlotCache, SlotsAnswer, Source
from availability.upstream import (
    EventTypeNotFound,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from availability.validation import FieldViolation, invalidation_scope, slots_query

__all__ = ["AvailabilityService"]

logger = logging.getLogger(__name__)

_SOURCES = {
    Source.NONE: pb.Freshness.SOURCE_UNSPECIFIED,
    Source.CACHE: pb.Freshness.SOURCE_CACHE,
    Source.UPSTREAM: pb.Freshness.SOURCE_UPSTREAM,
    Source.STALE: pb.Freshness.SOURCE_STALE,
}

# First match wins: BudgetExhausted is a kind of UpstreamUnavailable.
_UPSTREAM_CODES: dict[type[UpstreamError], grpc.StatusCode] = {
    BudgetExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UpstreamRejected: grpc.StatusCode.INVALID_ARGUMENT,
    EventTypeNotFound: grpc.StatusCode.NOT_FOUND,
    UpstreamAuthError: grpc.StatusCode.FAILED_PRECONDITION,
    UpstreamUnavailable: grpc.StatusCode.UNAVAILABLE,
}


class AvailabilityService(pb_grpc.AvailabilityServiceServicer):
    def __init__(self, cache: SlotCache, *, max_range_days: int, upstream_timeout: float) -> None:
        self._cache = cache
        self._max_range_days = max_range_days
        self._upstream_timeout = upstream_timeout

    async def GetSlots(
        self,
        request: pb.GetSlotsRequest,
        context: grpc.aio.ServicerContext[pb.GetSlotsRequest, pb.GetSlotsResponse],
    ) -> pb.GetSlotsResponse:
        try:
            query = slots_query(request, max_range_days=self._max_range_days)
        except FieldViolation as violation:
            await _abort_invalid(context, violation)
        try:
            answer = await self._cache.get_slots(query, timeout=self._timeout(context))
        except UpstreamError as exc:
            await _abort_upstream(context, exc, request.event_type_id)
        return _response(answer)

    async def InvalidateSlots(
        self,
        request: pb.InvalidateSlotsRequest,
        context: grpc.aio.ServicerContext[pb.InvalidateSlotsRequest, pb.InvalidateSlotsResponse],
    ) -> pb.InvalidateSlotsResponse:
        try:
            scope = invalidation_scope(request)
        except FieldViolation as violation:
            await _abort_invalid(context, violation)
        try:
            done = await self._cache.invalidate(scope, timeout=self._timeout(context))
        except UpstreamError as exc:
            # Whatever could be invalidated was; the caller retries (it is idempotent).
            logger.warning("InvalidateSlots incomplete: %s", exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"could not learn the event type's hosts from Cal.com ({exc}); retry",
            )
        logger.info(
            "invalidated %s on %s (reason: %s)",
            "everything"
            if done.everything
            else f"event types {list(done.event_type_ids)} / hosts {list(done.host_ids)}",
            "all dates" if done.all_dates else f"{len(done.dates)} day(s)",
            request.reason or "-",
        )
        return pb.InvalidateSlotsResponse(
            dates=[day.isoformat() for day in done.dates],
            all_dates=done.all_dates,
            event_type_ids=list(done.event_type_ids),
            host_ids=list(done.host_ids),
            everything=done.everything,
        )

    def _timeout(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            return self._upstream_timeout
        return min(remaining, self._upstream_timeout)


def _response(answer: SlotsAnswer) -> pb.GetSlotsResponse:
    response = pb.GetSlotsResponse()
    for day in answer.days:
        out = response.days.add(date=day.date)
        for slot in day.slots:
            message = out.slots.add()
            message.start.seconds = slot.start
            if slot.end is not None:
                message.end.seconds = slot.end
            if slot.seats is not None:
                seats = slot.seats
                message.seats.total = seats.total or 0
                message.seats.booked = seats.booked or 0
                message.seats.remaining = seats.remaining or 0
                message.seats.booking_uid = seats.booking_uid or ""
    freshness = answer.freshness
    response.freshness.source = _SOURCES[freshness.source]
    if freshness.fetched_at is not None:
        response.freshness.fetched_at.FromNanoseconds(int(freshness.fetched_at * 1e9))
        response.freshness.age.FromNanoseconds(int(freshness.age * 1e9))
    return response


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
    # Expected upstream trouble: one line, no traceback.
    logger.warning("GetSlots event type %d -> %s: %s", event_type_id, code.name, exc)
    await context.abort(code, message)
