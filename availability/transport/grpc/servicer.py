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

from availability.core.cache import SlotCache
from availability.core.ports import (
    BudgetExhausted,
    EventTypeNotFound,
    Overloaded,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from availability.transport.caller_text import quote_caller_text
from availability.transport.grpc.hit_memo import HitMemo
from availability.transport.grpc.validation import FieldViolation, invalidation_scope, slots_query
from availability.transport.grpc.wire import encode_days, encode_freshness
from availability.v1 import availability_pb2 as pb

__all__ = ["SERVICE_NAME", "AvailabilityService", "rpc_handlers"]

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvailabilityService"].full_name

_MAX_REASON_CHARS = 200
"""How much of ``InvalidateSlots.reason`` the log keeps ("booking_created" needs 15)."""

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
        self, cache: SlotCache, *, max_range_days: int, memo: HitMemo | None = None
    ) -> None:
        """``memo``: the fast lane for repeated reads (None: every read takes the normal
        path; only safe where ``cache.generation`` sees every invalidation, e.g.
        ``memory://``)."""
        self._cache = cache
        self._max_range_days = max_range_days
        self._memo = memo

    async def GetSlots(self, raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """Raw request bytes in (the fast lane is keyed by them), response bytes out."""
        memo = self._memo
        if memo is not None:
            hit = memo.answer(raw, self._cache.generation)
            if hit is not None:
                return hit
        try:
            request = pb.GetSlotsRequest.FromString(raw)
        except Exception:  # only parsing happens here: whatever fails, the bytes were bad
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid protobuf message"
            )
        try:
            query = slots_query(request, max_range_days=self._max_range_days)
        except FieldViolation as violation:
            await _abort_invalid(context, violation)
        # Read before the read: an invalidation landing meanwhile voids what is kept.
        generation = self._cache.generation
        try:
            answer = await self._cache.get_slots(query, timeout=self._timeout(context))
        except UpstreamError as exc:
            await _abort_upstream(context, exc, request.event_type_id)
        days = encode_days(answer)
        if memo is not None and not query.fresh:
            memo.keep(raw, answer, days, generation)
        freshness = answer.freshness
        return days + encode_freshness(freshness.source, freshness.fetched_at, freshness.age)

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
            quote_caller_text(request.reason, limit=_MAX_REASON_CHARS) if request.reason else "-",
        )
        return pb.InvalidateSlotsResponse(
            dates=[day.isoformat() for day in done.dates],
            all_dates=done.all_dates,
            event_type_ids=list(done.event_type_ids),
            host_ids=list(done.host_ids),
            everything=done.everything,
        )

    @staticmethod
    def _timeout(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
        """The caller's remaining time (None: no deadline). The core decides what to do
        with it: answer before it, minus a reserve (see availability.core.deadlines)."""
        remaining: float | None = context.time_remaining()
        return remaining


def rpc_handlers(service: AvailabilityService) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The service's method handlers. GetSlots takes and returns bytes (parsed and
    encoded by the servicer itself), so it has neither deserializer nor serializer."""
    return {
        # Bytes both ways: the servicer parses only what the fast lane does not answer.
        "GetSlots": grpc.unary_unary_rpc_method_handler(service.GetSlots),
        "InvalidateSlots": grpc.unary_unary_rpc_method_handler(
            service.InvalidateSlots,
            request_deserializer=pb.InvalidateSlotsRequest.FromString,
            response_serializer=pb.InvalidateSlotsResponse.SerializeToString,
        ),
    }


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
