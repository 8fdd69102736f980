"""A TCP forwarder in front of the sandbox for the faults HTTP cannot express.

The sandbox answers at the HTTP level (statuses, bodies, holds, trickles);
what happens below HTTP needs a socket of its own:

- :meth:`FaultProxy.reset`: every connection, carried or new, is reset (TCP RST,
  ``SO_LINGER`` 0) as soon as the client sends on it: "connection reset by peer"
  after the request went out;
- :meth:`FaultProxy.refuse`: the proxy stops listening and drops what it carries,
  so connecting is refused (``ECONNREFUSED``): Cal.com gone;
- :meth:`FaultProxy.heal`: forward again, listening on the same port.

Runs in the caller's event loop, like the sandbox and the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct

__all__ = ["FaultProxy"]


class _Mode(enum.Enum):
    FORWARD = "forward"
    RESET = "reset"
    REFUSE = "refuse"


Link = tuple[asyncio.StreamWriter, asyncio.StreamWriter]


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._mode = _Mode.FORWARD
        self._server: asyncio.Server | None = None
        self._links: set[Link] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def reset(self) -> None:
        self._mode = _Mode.RESET

    async def refuse(self) -> None:
        self._mode = _Mode.REFUSE
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            self._drop(link, reset=False)

    async def heal(self) -> None:
        self._mode = _Mode.FORWARD
        if self._server is None:
            await self._listen()

    async def __aenter__(self) -> FaultProxy:
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._drop(link, reset=False)
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode is not _Mode.FORWARD:
            with contextlib.suppress(OSError):
                await reader.read(1)  # the request is on its way: then reset
            _reset(writer)
            return
        try:
            far_reader, far_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        link = (writer, far_writer)
        self._links.add(link)
        for source, sink, outbound in ((reader, far_writer, True), (far_reader, writer, False)):
            pump = asyncio.create_task(self._pump(source, sink, link, outbound))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: Link,
        outbound: bool,
    ) -> None:
        reset = False
        try:
            while data := await source.read(65536):
                if outbound and self._mode is not _Mode.FORWARD:
                    reset = True
                    break
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            self._drop(link, reset=reset)

    def _drop(self, link: Link, *, reset: bool) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        client, far = link
        if reset:
            _reset(client)
        else:
            client.transport.abort()
        far.transport.abort()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: what a crashed or firewalled peer sends."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
