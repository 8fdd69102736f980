"""Play the server for the sync clients on a grpcio-testing channel.

The client runs in a worker thread and blocks on its call; the test takes each
RPC off the channel (its request and invocation metadata), answers it with a
response or any status and trailing metadata, and gets back what the client
returned or raised. grpcio-testing drops the deadline a call was given, so a
thin wrapper of its channel notes each call's timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc_testing
import pytest
from google.protobuf.message import Message

from availability.v1 import availability_pb2 as pb
from availability_client import AvailabilityError

T = TypeVar("T")

SERVICE = pb.DESCRIPTOR.services_by_name["AvailabilityService"]
GET_SLOTS = SERVICE.methods_by_name["GetSlots"]
INVALIDATE = SERVICE.methods_by_name["InvalidateSlots"]
TOKEN = "t0ken-of-the-test"


@dataclass(frozen=True)
class Answer:
    """How the played server answers one RPC."""

    method: Any  # a MethodDescriptor: GET_SLOTS or INVALIDATE
    response: Message | None = None
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    trailing_metadata: Sequence[tuple[str, str | bytes]] = ()


@dataclass(frozen=True)
class Seen:
    """One RPC as the played server received it."""

    request: Any
    metadata: dict[str, str | bytes]
    timeout: float | None


class _NotingDeadlines(grpc.Channel):
    """The grpcio-testing channel, noting each unary call's timeout on the way through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.timeouts: list[float | None] = []

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call = self._inner.unary_unary(method, *args, **kwargs)

        def noting(request: Any, timeout: float | None = None, **rest: Any) -> Any:
            self.timeouts.append(timeout)
            # grpcio-testing takes no wait_for_ready or compression: pass what it knows.
            return call(request, timeout=timeout, metadata=rest.get("metadata"))

        return noting

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._inner.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._inner.unsubscribe(callback)

    def close(self) -> None:
        self._inner.close()


@dataclass
class PlayedServer:
    channel: Any  # grpc_testing.Channel
    client_channel: _NotingDeadlines
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    def exchange(self, call: Callable[[], T], *answers: Answer) -> tuple[T, list[Seen]]:
        """Run ``call`` in a worker thread and answer its RPCs, in order, with ``answers``."""
        first = len(self.client_channel.timeouts)
        future = self._pool.submit(call)
        seen = []
        for answer in answers:
            metadata, request, rpc = self.channel.take_unary_unary(answer.method)
            rpc.terminate(
                answer.response, tuple(answer.trailing_metadata), answer.code, answer.details
            )
            seen.append((request, dict(metadata)))
        result = future.result(timeout=30)
        timeouts = self.client_channel.timeouts[first:]
        assert len(timeouts) == len(answers), "the client made more calls than were answered"
        return result, [Seen(r, m, t) for (r, m), t in zip(seen, timeouts, strict=True)]

    def failure(self, call: Callable[[], object], *answers: Answer) -> AvailabilityError:
        """What ``call`` raised when its RPCs got ``answers``."""

        def raising() -> AvailabilityError:
            try:
                call()
            except AvailabilityError as exc:
                return exc
            raise AssertionError("the call did not fail")

        error, _ = self.exchange(raising, *answers)
        return error

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture
def played() -> Iterator[PlayedServer]:
    channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
    server = PlayedServer(channel, _NotingDeadlines(channel))
    yield server
    server.close()
