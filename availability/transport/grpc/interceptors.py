"""The gRPC server's interceptors: authentication, then request decoding.

:class:`AuthInterceptor` answers UNAUTHENTICATED or PERMISSION_DENIED before
a request's bytes are even parsed (roles: :mod:`.tokens`).

:class:`MalformedRequestInterceptor`: request bytes that are not a valid
message are the caller's error. grpc answers a request its deserializer
cannot parse with UNKNOWN and the exception's text; this interceptor parses
unary requests itself and answers INVALID_ARGUMENT instead, so a client (or
a fuzzer) can tell its own mistakes from the server's. Handlers are wrapped
once per method and reused: the hit path pays a dictionary lookup, not a
closure per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from availability.transport.grpc.tokens import ApiTokens, required_role

__all__ = ["AuthInterceptor", "MalformedRequestInterceptor"]

_BEARER = "bearer "


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED or PERMISSION_DENIED before the request is even parsed."""

    def __init__(self, tokens: ApiTokens) -> None:
        if not len(tokens):
            raise ValueError("an AuthInterceptor without tokens would refuse every call")
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        required = required_role(method)
        if required is None:
            return await continuation(handler_call_details)
        token = _bearer(handler_call_details.invocation_metadata)
        role = None if token is None else self._tokens.role(token)
        if role is None:
            return _refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown API token: send 'authorization: Bearer <token>'",
            )
        if role < required:
            return _refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token's role ({role.name.lower()}) may not call {method.rsplit('/', 1)[-1]}",
            )
        return await continuation(handler_call_details)


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            if value[: len(_BEARER)].lower() == _BEARER:
                return value[len(_BEARER) :].strip()
            return None
    return None


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler[bytes, bytes]:
    # Streaming and without a deserializer: the refusal is sent before any request
    # message is read, so an unauthenticated caller never reaches the protobuf parser.
    async def refuse(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> None:
        await context.abort(code, message)

    return grpc.stream_stream_rpc_method_handler(refuse)


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
