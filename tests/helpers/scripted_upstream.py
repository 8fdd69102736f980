"""A scripted HTTP server on loopback that plays Cal.com in adapter tests.

Mocking httpx would test our assumptions about httpx; a real server on a
real socket exercises connection handling, headers, timeouts and body
decoding the way production does. Each request is recorded, and answered
from a queue of scripted responses so a test states exactly what "Cal.com"
says and then inspects exactly what the adapter sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from availability.transport.http.serving import serve_asgi

__all__ = ["RecordedRequest", "ScriptedResponse", "ScriptedUpstream"]

_NO_JSON: Any = object()


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What reached the server, as the server saw it (after any client mangling)."""

    method: str
    path: str
    raw_query: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    """Header pairs with lower-case names, in arrival order."""
    client_port: int | None
    """The client's source port: equal ports on sequential requests mean keep-alive."""

    @property
    def params(self) -> dict[str, str]:
        """Query as a dict; tests of the adapter never expect repeated keys."""
        return dict(self.query)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """One answer. ``json`` wins over ``body``; ``delay`` waits before answering and
    ``drip_interval`` streams the body one byte at a time, for deadline tests."""

    status: int = 200
    json: Any = _NO_JSON
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip_interval: float | None = None

    def content(self) -> bytes:
        if self.json is not _NO_JSON:
            return json.dumps(self.json).encode()
        return self.body.encode() if isinstance(self.body, str) else self.body

    def media_type(self) -> str:
        return "application/json" if self.json is not _NO_JSON else "text/plain"


class ScriptedUpstream:
    """An ASGI app answering from a queue; serve it with :meth:`running`.

    An unscripted request gets a 599 and is counted in ``unscripted`` so a
    test that forgot to queue a response fails loudly instead of passing on a
    generic error mapping.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.unscripted = 0
        self.url = ""
        self._queue: deque[ScriptedResponse] = deque()
        self._closing = asyncio.Event()

    def enqueue(self, *responses: ScriptedResponse) -> None:
        self._queue.extend(responses)

    def reply_json(
        self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.enqueue(ScriptedResponse(status=status, json=payload, headers=headers or {}))

    @property
    def pending(self) -> int:
        return len(self._queue)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[ScriptedUpstream]:
        """Serve a fresh instance on a free loopback port; ``url`` is set inside the block."""
        upstream = cls()
        async with serve_asgi(upstream) as server:
            upstream.url = server.url
            try:
                yield upstream
            finally:
                # Wake handlers still sleeping on a scripted delay so shutdown
                # does not wait for them (the client gave up long ago).
                upstream._closing.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                raw_query=request.url.query,
                query=tuple(request.query_params.multi_items()),
                headers=tuple((key.lower(), value) for key, value in request.headers.items()),
                client_port=request.client.port if request.client else None,
            )
        )
        if not self._queue:
            self.unscripted += 1
            response: Response = Response(b"no scripted response", status_code=599)
            await response(scope, receive, send)
            return
        scripted = self._queue.popleft()
        if scripted.delay > 0:
            await self._pause(scripted.delay)
        if scripted.drip_interval is not None:
            response = StreamingResponse(
                self._drip(scripted.content(), scripted.drip_interval),
                status_code=scripted.status,
                headers=dict(scripted.headers),
                media_type=scripted.media_type(),
            )
        else:
            response = Response(
                scripted.content(),
                status_code=scripted.status,
                headers=dict(scripted.headers),
                media_type=scripted.media_type(),
            )
        await response(scope, receive, send)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _drip(self, content: bytes, interval: float) -> AsyncIterator[bytes]:
        for index in range(len(content)):
            if self._closing.is_set():
                return
            yield content[index : index + 1]
            await self._pause(interval)
