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

import uvicorn
from starlette.types import ASGIApp

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
    """A uvicorn server that leaves signals alone.

    Stock uvicorn takes over SIGINT/SIGTERM while it runs; embedded, it would
    stop the sandbox before the gRPC server has drained. The process owner
    (``availability.server.run``) handles signals and stops everything in order.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
        app,
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
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
