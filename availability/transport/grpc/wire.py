"""GetSlotsResponse bytes, assembled from per-bucket encodings.

Every slot of a bucket is encoded once, the first time the bucket is
served, and kept in the bucket's memo; a hit then only slices and joins bytes. The
framing is protobuf's own: ``days`` (field 1) and ``DaySlots.slots`` (field
2) are length-delimited, so encoded messages concatenate. The servicer
returns these bytes through a pass-through serializer.
"""

from __future__ import annotations

from array import array

from availability.core.buckets import Bucket
from availability.core.cache import SlotsAnswer, Source
from availability.core.slots import Slot
from availability.v1 import availability_pb2 as pb

__all__ = [
    "encode_cache_freshness",
    "encode_days",
    "encode_freshness",
    "encode_slots_response",
    "fetched_at_field",
]

_SOURCES = {
    Source.NONE: pb.Freshness.SOURCE_UNSPECIFIED,
    Source.CACHE: pb.Freshness.SOURCE_CACHE,
    Source.UPSTREAM: pb.Freshness.SOURCE_UPSTREAM,
    Source.STALE: pb.Freshness.SOURCE_STALE,
}


def encode_slots_response(answer: SlotsAnswer) -> bytes:
    """The serialized GetSlotsResponse: :func:`encode_days`, then :func:`encode_freshness`."""
    freshness = answer.freshness
    return encode_days(answer) + encode_freshness(
        freshness.source, freshness.fetched_at, freshness.age
    )


def encode_days(answer: SlotsAnswer) -> bytes:
    """The ``days`` fields of the GetSlotsResponse, assembled from per-bucket encodings.

    Every slot of a bucket is encoded once, the first time the bucket is
    served, and kept in the bucket's memo; a hit then only slices and joins
    bytes. The framing is protobuf's own: ``days`` (field 1) and
    ``DaySlots.slots`` (field 2) are length-delimited, so encoded messages
    concatenate. What follows (the freshness) can change with every answer
    that reuses these bytes, so it is encoded apart.
    """
    parts: list[bytes] = []
    for day in answer.days:
        date = day.date.encode()
        body = [_DATE_TAG, _varint(len(date)), date]
        for run in day.runs:
            encoded, offsets = _encoded_slots(run.bucket)
            body.append(encoded[offsets[run.first] : offsets[run.last]])
        day_bytes = b"".join(body)
        parts += (_DAYS_TAG, _varint(len(day_bytes)), day_bytes)
    return b"".join(parts)


def encode_freshness(source: Source, fetched_at: float | None, age: float) -> bytes:
    """The ``freshness`` field of a GetSlotsResponse, encoded by hand.

    Byte for byte what protobuf makes of ``Freshness(source=..., age=...,
    fetched_at=...)`` (the tests compare): a hit pays a few varints instead
    of building three messages.
    """
    if source is Source.CACHE and fetched_at is not None:
        return encode_cache_freshness(fetched_at_field(fetched_at), age)
    code = _SOURCES[source]
    fields = [_SOURCE_TAG, _varint(code)] if code else []
    if fetched_at is not None:
        fields += (_AGE_TAG, *_seconds_and_nanos(age))
        fields += (_FETCHED_AT_TAG, *_seconds_and_nanos(fetched_at))
    freshness = b"".join(fields)
    return _FRESHNESS_TAG + _varint(len(freshness)) + freshness


def fetched_at_field(fetched_at: float) -> bytes:
    """``Freshness.fetched_at``, encoded: what :func:`encode_cache_freshness` takes, made
    once per kept answer (it does not change while the answer is reused)."""
    return _FETCHED_AT_TAG + b"".join(_seconds_and_nanos(fetched_at))


def encode_cache_freshness(fetched_at: bytes, age: float) -> bytes:
    """:func:`encode_freshness` of a cache answer whose ``fetched_at`` is already encoded
    (:func:`fetched_at_field`): only ``age`` is encoded, per answer. The fast lane's
    share of a hit, so written out flat."""
    seconds, nanos = divmod(int(age * 1e9), 1_000_000_000)
    age_body = (b"\x08" + _varint(seconds) if seconds else b"") + (
        b"\x10" + _varint(nanos) if nanos else b""
    )
    # Both bodies are far below 128 bytes: each length is one byte.
    body = b"".join((_CACHE_SOURCE, _AGE_TAG, _ONE_BYTE[len(age_body)], age_body, fetched_at))
    return _FRESHNESS_TAG + _ONE_BYTE[len(body)] + body


def _seconds_and_nanos(value: float) -> tuple[bytes, bytes]:
    """A Duration or Timestamp (same fields) of a non-negative ``value``: length, body."""
    nanos = int(value * 1e9)
    seconds, nanos = divmod(nanos, 1_000_000_000)
    body = (b"\x08" + _varint(seconds) if seconds else b"") + (
        b"\x10" + _varint(nanos) if nanos else b""
    )
    return _varint(len(body)), body


# Tags: (field number << 3) | 2 (length-delimited).
_DAYS_TAG = b"\x0a"  # GetSlotsResponse.days = 1
_FRESHNESS_TAG = b"\x12"  # GetSlotsResponse.freshness = 2
_DATE_TAG = b"\x0a"  # DaySlots.date = 1
_SLOTS_TAG = b"\x12"  # DaySlots.slots = 2
_SOURCE_TAG = b"\x08"  # Freshness.source = 1 (varint)
_AGE_TAG = b"\x12"  # Freshness.age = 2
_FETCHED_AT_TAG = b"\x1a"  # Freshness.fetched_at = 3


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]
"""The varints of 0 to 127, each one byte."""
_CACHE_SOURCE = _SOURCE_TAG + _ONE_BYTE[pb.Freshness.SOURCE_CACHE]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encoded_slots(bucket: Bucket) -> tuple[bytes, array[int]]:
    """Every slot of ``bucket`` as ready ``DaySlots.slots`` fields, computed once.

    One bytes object and the offset where each slot's field begins (plus the
    end): slots ``i`` to ``j`` are ``encoded[offsets[i]:offsets[j]]``, one
    slice, and a bucket keeps two objects rather than one per slot.
    """
    memo: tuple[bytes, array[int]] | None = bucket.memo
    if memo is None:
        fields = [
            _SLOTS_TAG + _varint(len(message)) + message
            for message in (_slot(bucket.slot(i)).SerializeToString() for i in range(len(bucket)))
        ]
        offsets = array("I", [0])
        for field in fields:
            offsets.append(offsets[-1] + len(field))
        memo = bucket.memo = (b"".join(fields), offsets)
    return memo


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
