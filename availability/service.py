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

from availability.buckets import Bucket
from availability.budget import BudgetExhausted
from availability.cache import SlotCache, SlotsAnswer, Source
from availability.slots import Slot
from availability.upstream import (
    EventTypeNotFound,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from availability.v1 import availability_pb2 as pb
from availability.validation import FieldViolation, invalidation_scope, slots_query

__all__ = ["AvailabilityService", "rpc_handlers"]

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


class AvailabilityService:
    def __init__(self, cache: SlotCache, *, max_range_days: int, upstream_timeout: float) -> None:
        self._cache = cache
        self._max_range_days = max_range_days
        self._upstream_timeout = upstream_timeout

    async def GetSlots(
        self,
        request: pb.GetSlotsRequest,
        context: grpc.aio.ServicerContext[pb.GetSlotsRequest, pb.GetSlotsResponse],
    ) -> bytes:
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


def _response(answer: SlotsAnswer) -> bytes:
    """The serialized GetSlotsResponse, assembled from per-bucket encoded slots.

    Every slot of a bucket is encoded once, the first time the bucket is
    served, and kept in the bucket's memo; a hit then only joins bytes. The
    framing is protobuf's own: ``days`` (field 1) and ``DaySlots.slots``
    (field 2) are length-delimited, so encoded messages concatenate.
    """
    parts: list[bytes] = []
    for day in answer.days:
        date = day.date.encode()
        body = [_DATE_TAG, _varint(len(date)), date]
        for run in day.runs:
            body.extend(_encoded_slots(run.bucket)[run.first : run.last])
        day_bytes = b"".join(body)
        parts += (_DAYS_TAG, _varint(len(day_bytes)), day_bytes)
    freshness = _freshness(answer).SerializeToString()
    parts += (_FRESHNESS_TAG, _varint(len(freshness)), freshness)
    return b"".join(parts)


# Tags: (field number << 3) | 2 (length-delimited).
_DAYS_TAG = b"\x0a"  # GetSlotsResponse.days = 1
_FRESHNESS_TAG = b"\x12"  # GetSlotsResponse.freshness = 2
_DATE_TAG = b"\x0a"  # DaySlots.date = 1
_SLOTS_TAG = b"\x12"  # DaySlots.slots = 2
_MEMO_KEY = "availability.v1.Slot"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encoded_slots(bucket: Bucket) -> tuple[bytes, ...]:
    """Each slot of ``bucket`` as a ready ``DaySlots.slots`` field, computed once."""
    encoded: tuple[bytes, ...] | None = bucket.memo.get(_MEMO_KEY)
    if encoded is None:
        encoded = tuple(
            _SLOTS_TAG + _varint(len(message)) + message
            for message in (_slot(slot).SerializeToString() for slot in bucket.slots)
        )
        bucket.memo[_MEMO_KEY] = encoded
    return encoded


def _slot(slot: Slot) -> pb.Slot:
    message = pb.Slot()
    message.start.seconds = slot.start
    if slot.end is not None:
        message.end.seconds = slot.end
    if slot.seats is not None:
        seats = slot.seats
        message.seats.total = seats.total or 0
        message.seats.booked = seats.booked or 0
        message.seats.remaining = seats.remaining or 0
        message.seats.booking_uid = seats.booking_uid or ""
    return message


def _freshness(answer: SlotsAnswer) -> pb.Freshness:
    freshness = answer.freshness
    message = pb.Freshness(source=_SOURCES[freshness.source])
    if freshness.fetched_at is not None:
        message.fetched_at.FromNanoseconds(int(freshness.fetched_at * 1e9))
        message.age.FromNanoseconds(int(freshness.age * 1e9))
    return message


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
    # Expected upstream trouble: one line, no traceback.
    logger.warning("GetSlots event type %d -> %s: %s", event_type_id, code.name, exc)
    await context.abort(code, message)
