"""What every client shares: one owned channel, the token, the deadline, the error mapping.

:class:`Connection` (threads) and :class:`AsyncConnection` (asyncio) are the
bases of the agent and booking clients. Each owns one channel for its whole
life, opened by the constructor and closed by the context manager (or
``close()``); a gRPC channel multiplexes concurrent calls, so one client is
meant to be shared by every thread (or every task of its event loop) of a
process. ``from_channel`` wraps a channel the caller manages instead (its own
interceptors or load balancing); the client then leaves closing it to the
caller.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Self

import grpc

from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from availability_client._channel import TlsConfig, bearer_metadata, open_aio_channel, open_channel
from availability_client._errors import AvailabilityError, DeadlineExceeded, error_from_status

if TYPE_CHECKING:
    from availability.v1.availability_pb2_grpc import AvailabilityServiceAsyncStub

__all__ = ["AsyncConnection", "Connection", "Deadline"]


class _Settings:
    """The part of both connections that is neither sync nor async."""

    default_timeout: ClassVar[float] = 1.0
    """Seconds a call may take, all retries included, unless the client or the call says."""

    def __init__(self, *, token: str | None, timeout: float | None) -> None:
        self._timeout = _positive(self.default_timeout if timeout is None else timeout)
        self._metadata = bearer_metadata(token)
        self._closed = False

    def _deadline(self, timeout: float | None) -> Deadline:
        if self._closed:
            # Like httpx: a usage error, not a failed call (and not grpc's own message).
            raise RuntimeError(f"this {type(self).__name__} is closed")
        return Deadline(self._timeout if timeout is None else timeout)


class Deadline:
    """One deadline across the calls of one method (a reschedule may take two)."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + _positive(seconds)

    def remaining(self) -> float:
        left = self._at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before every call was made")
        return left


class Connection(_Settings):
    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsConfig | None = None,
        timeout: float | None = None,
    ) -> None:
        """Open a channel to ``target`` (``host:port``): plaintext, or TLS with ``tls``.

        ``token`` goes out as ``authorization: Bearer <token>`` on every call;
        ``timeout`` is the default deadline of each call, in seconds.
        """
        super().__init__(token=token, timeout=timeout)
        self._adopt(open_channel(target, tls), owned=True)

    @classmethod
    def from_channel(
        cls, channel: grpc.Channel, *, token: str | None = None, timeout: float | None = None
    ) -> Self:
        """A client on a channel the caller opened and will close."""
        client = cls.__new__(cls)
        _Settings.__init__(client, token=token, timeout=timeout)
        client._adopt(channel, owned=False)
        return client

    def _adopt(self, channel: grpc.Channel, *, owned: bool) -> None:
        self._channel = channel
        self._owned = owned
        self._stub = pb_grpc.AvailabilityServiceStub(channel)

    def close(self) -> None:
        """Close the channel (if this client opened it); calls in flight are cancelled."""
        self._closed = True
        if self._owned:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _get_slots(self, request: pb.GetSlotsRequest, deadline: Deadline) -> pb.GetSlotsResponse:
        try:
            return self._stub.GetSlots(
                request, timeout=deadline.remaining(), metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def _invalidate(
        self, requests: Sequence[pb.InvalidateSlotsRequest], deadline: Deadline
    ) -> list[pb.InvalidateSlotsResponse]:
        try:
            return [
                self._stub.InvalidateSlots(
                    request, timeout=deadline.remaining(), metadata=self._metadata
                )
                for request in requests
            ]
        except grpc.RpcError as exc:
            raise _error(exc) from None


class AsyncConnection(_Settings):
    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsConfig | None = None,
        timeout: float | None = None,
    ) -> None:
        """Open a channel to ``target`` (``host:port``): plaintext, or TLS with ``tls``.

        Create it inside the event loop that will use it. ``token`` goes out as
        ``authorization: Bearer <token>`` on every call; ``timeout`` is the
        default deadline of each call, in seconds.
        """
        super().__init__(token=token, timeout=timeout)
        self._adopt(open_aio_channel(target, tls), owned=True)

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, token: str | None = None, timeout: float | None = None
    ) -> Self:
        """A client on a channel the caller opened and will close."""
        client = cls.__new__(cls)
        _Settings.__init__(client, token=token, timeout=timeout)
        client._adopt(channel, owned=False)
        return client

    def _adopt(self, channel: grpc.aio.Channel, *, owned: bool) -> None:
        self._channel = channel
        self._owned = owned
        self._stub: AvailabilityServiceAsyncStub = pb_grpc.AvailabilityServiceStub(channel)

    async def close(self) -> None:
        """Close the channel (if this client opened it); calls in flight are cancelled."""
        self._closed = True
        if self._owned:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _get_slots(
        self, request: pb.GetSlotsRequest, deadline: Deadline
    ) -> pb.GetSlotsResponse:
        try:
            return await self._stub.GetSlots(
                request, timeout=deadline.remaining(), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_status(exc.code(), exc.details(), exc.trailing_metadata()) from None

    async def _invalidate(
        self, requests: Sequence[pb.InvalidateSlotsRequest], deadline: Deadline
    ) -> list[pb.InvalidateSlotsResponse]:
        responses = []
        try:
            for request in requests:
                responses.append(
                    await self._stub.InvalidateSlots(
                        request, timeout=deadline.remaining(), metadata=self._metadata
                    )
                )
        except grpc.aio.AioRpcError as exc:
            raise error_from_status(exc.code(), exc.details(), exc.trailing_metadata()) from None
        return responses


def _positive(seconds: float) -> float:
    if not seconds > 0:  # also refuses NaN
        raise ValueError(f"timeout must be a positive number of seconds, got {seconds!r}")
    return seconds


def _error(exc: grpc.RpcError) -> AvailabilityError:
    if isinstance(exc, grpc.Call):
        return error_from_status(exc.code(), exc.details(), exc.trailing_metadata())
    return AvailabilityError(str(exc) or "the call failed")
