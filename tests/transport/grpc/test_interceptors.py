"""Bytes that are no protobuf message are the caller's mistake: INVALID_ARGUMENT, not UNKNOWN."""

from __future__ import annotations

import grpc
import pytest

from availability.v1 import availability_pb2 as pb
from tests.test_cli import SERVICE


@pytest.mark.parametrize("method", ["GetSlots", "InvalidateSlots"])
@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x08", b'"\x05ab', b"\x22\x02\xff\xfe"])
async def test_malformed_request_is_invalid_argument(
    channel: grpc.aio.Channel, method: str, raw: bytes
) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/{SERVICE}/{method}"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(raw)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DecodeError" not in (caught.value.details() or "")


async def test_well_formed_bytes_still_reach_the_servicer(channel: grpc.aio.Channel) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, pb.InvalidateSlotsResponse] = channel.unary_unary(
        f"/{SERVICE}/InvalidateSlots",
        response_deserializer=pb.InvalidateSlotsResponse.FromString,
    )
    done = await call(pb.InvalidateSlotsRequest(everything=True).SerializeToString())
    assert done.everything
