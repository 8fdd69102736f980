"""Request bytes that are not a valid message are the caller's error.

grpc answers a request its deserializer cannot parse with UNKNOWN and the
exception's text; this interceptor parses unary requests itself and answers
INVALID_ARGUMENT instead, so a client (or a fuzzer) can tell its own mistakes
from the server's. Handlers are wrapped once per method and reused: the hit
path pays a dictionary lookup, not a closure per call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

__all__ = ["MalformedRequestInterceptor"]


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.unary_unary is None
            or handler.request_deserializer is None
        ):
            return handler
        wrapped = _tolerant(handler.unary_unary, handler.request_deserializer, handler)
        self._wrapped[method] = wrapped
        return wrapped


def _tolerant(
    behavior: Callable[[Any, Any], Any],
    deserialize: Callable[[bytes], Any],
    handler: grpc.RpcMethodHandler[Any, Any],
) -> grpc.RpcMethodHandler[bytes, Any]:
    async def parse_then_call(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = deserialize(raw)
        except Exception:  # only parsing happens here: whatever fails, the bytes were bad
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid protobuf message"
            )
        return await behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(
        parse_then_call, response_serializer=handler.response_serializer
    )
