"""Run an ASGI app under uvicorn inside the current event loop.

Used for the sandbox upstream and the webhook endpoint: they share the
process and event loop with the gRPC server, so start-up and shutdown are
one sequence and tests get a real HTTP server on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.utils import formatdate

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RunningHttpServer", "serve_asgi"]


@dataclass(frozen=True, slots=True)
class RunningHttpServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and keeps no timer.

    Signals: stock uvicorn takes over SIGINT/SIGTERM while it runs; embedded, it
    would stop the sandbox before the gRPC server has drained. The process owner
    (``availability.server.run``) handles signals and stops everything in order.

    No timer: stock uvicorn wakes every 100 ms to refresh its Date header and look
    at ``should_exit``. While any timer is pending, asyncio tends its timer heap on
    every turn of the loop, and this loop also runs the gRPC hit path: counted
    with a bytecode tracer, that was 80-190 Python opcodes per hit (of ~3,600).
    This one waits for :meth:`stop` instead, and the Date header is written per
    response (:class:`_DateHeader`; these endpoints serve probes, scrapes and
    webhooks, never the hit path).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopped = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers, once
        await self._stopped.wait()

    def stop(self) -> None:
        self.should_exit = True
        self._stopped.set()


class _DateHeader:
    """Adds ``date`` (RFC 9110 requires it of a server with a clock) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = (b"date", formatdate(usegmt=True).encode())
                message = {**message, "headers": [*message.get("headers", ()), date]}
            await send(message)

        await self._app(scope, receive, dated)


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningHttpServer]:
    """Serve ``app`` on ``host:port`` (0 = a free port) until the block exits."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: accepted sockets inherit it, and asyncio only turns
    # Nagle off (TCP_NODELAY) on sockets that say they are TCP. Without it every response
    # on a kept-alive connection waits ~40 ms for the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        _DateHeader(app),
        date_header=False,  # written per response instead: see _EmbeddedServer
        log_level="warning",
        # No logging config of uvicorn's own: its records go to the process's handlers,
        # in the process's format (one JSON object per line, when asked).
        log_config=None,
        access_log=False,
        lifespan="off",
        # Keep-alive connections would hold shutdown for their full timeout.
        timeout_graceful_shutdown=1,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raise the start-up failure
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.005)
        yield RunningHttpServer(host, bound_port)
    finally:
        server.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
