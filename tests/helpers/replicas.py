"""Real ``availability serve`` processes sharing one Redis, and a Redis of a test's own.

The multi-replica guarantees (one upstream call for the whole fleet, an
invalidation on one replica honoured by all, one Cal.com budget) only mean
something across process boundaries: in-process fakes would share memory and
hide exactly the bugs these tests exist to catch. So :func:`running_replicas`
starts the installed console script, as an operator would, once per replica,
on port 0, and learns each bound port from the log line
``serving ... on HOST:PORT``.

Each replica's stderr is drained continuously into a bounded buffer: a server
whose log pipe fills up blocks on its next log call, which would look like a
hang in the code under test. Tests also use the buffer as an observable (e.g.
"Redis reachable again").

:class:`RedisServer` runs a private ``redis-server`` (no persistence) on a
free loopback port, and can be stopped and started again on the same port
(an outage that loses everything), or frozen (SIGSTOP: a hung Redis that
accepts connections and answers nothing until thawed). :class:`Partition`
sits between the replicas and a Redis and can cut them off from it while
Redis keeps its data: the outage where replaying what was missed matters.

Nothing outlives the test: shutdown is SIGTERM, a bounded wait, then SIGKILL;
an ``atexit`` hook kills whatever an aborted test run left behind, and on
Linux each child also gets SIGTERM from the kernel if this process dies.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from availability.v1 import availability_pb2_grpc as pb_grpc

__all__ = [
    "AVAILABILITY",
    "Partition",
    "RedisServer",
    "Replica",
    "ReplicaLog",
    "free_port",
    "running_replicas",
]

AVAILABILITY = str(Path(sys.executable).parent / "availability")
"""The installed console script of the venv running the tests."""

_SERVING = re.compile(r"serving \S+ on (\S+:\d+)")

# Every child still running, so an aborted test run cannot leak processes.
_LIVE: set[asyncio.subprocess.Process] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def free_port() -> int:
    """A loopback port free right now (the OS picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ReplicaLog:
    """The last ``limit`` stderr lines of one replica, fed by a drain task."""

    def __init__(self, limit: int = 2000) -> None:
        self.lines: deque[str] = deque(maxlen=limit)

    def append(self, line: str) -> None:
        self.lines.append(line)

    def count(self, needle: str) -> int:
        """How many buffered lines contain ``needle``."""
        return sum(needle in line for line in self.lines)

    def text(self) -> str:
        return "".join(self.lines)


@dataclass
class Replica:
    """One running server process and a connected client."""

    name: str
    process: asyncio.subprocess.Process
    target: str
    """``host:port`` the replica serves on."""
    channel: grpc.aio.Channel
    stub: pb_grpc.AvailabilityServiceAsyncStub
    log: ReplicaLog = field(repr=False)
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)


def _environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The test's environment minus any ``AVAILABILITY_*`` it happens to carry, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVAILABILITY_")}
    env.update(overrides)
    return env


async def _drain(stream: asyncio.StreamReader, log: ReplicaLog) -> None:
    while line := await stream.readline():
        log.append(line.decode(errors="replace"))


# Linux: the child asks for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG),
# then becomes the server; so even a test process killed outright leaves no replica.
_ORPHAN_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _guarded(*argv: str) -> list[str]:
    """``argv``, run so that it dies with this process where the OS allows it."""
    if sys.platform != "linux":
        return list(argv)
    return [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *argv]


async def _spawn(
    name: str, env: Mapping[str, str], startup_timeout: float, log_lines: int
) -> Replica:
    process = await asyncio.create_subprocess_exec(
        *_guarded(AVAILABILITY, "serve", "--grpc-addr", "127.0.0.1:0"),
        env=_environment(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _LIVE.add(process)
    assert process.stderr is not None
    log = ReplicaLog(log_lines)
    target: str | None = None
    try:
        async with asyncio.timeout(startup_timeout):
            while target is None:
                raw = await process.stderr.readline()
                if not raw:
                    break  # the process exited before serving
                line = raw.decode(errors="replace")
                log.append(line)
                if found := _SERVING.search(line):
                    target = found.group(1)
    except TimeoutError:
        pass
    if target is None:
        await _stop_process(process, 5.0)
        raise RuntimeError(f"replica {name} did not start:\n{log.text()}")
    drain = asyncio.create_task(_drain(process.stderr, log))
    channel = grpc.aio.insecure_channel(target)
    replica = Replica(
        name, process, target, channel, pb_grpc.AvailabilityServiceStub(channel), log, drain
    )
    try:
        await asyncio.wait_for(channel.channel_ready(), startup_timeout)
    except BaseException:
        await _stop_replica(replica, 5.0)
        raise
    return replica


async def _stop_process(process: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; never leaves the child running."""
    try:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
    finally:
        _LIVE.discard(process)


async def _stop_replica(replica: Replica, timeout: float) -> None:
    await replica.channel.close()
    await _stop_process(replica.process, timeout)
    if replica._drain is not None:
        # The pipe reaches EOF once the process is gone; bound it anyway.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(replica._drain, timeout)


@contextlib.asynccontextmanager
async def running_replicas(
    count: int,
    *,
    cache_url: str,
    calcom_url: str,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    log_lines: int = 2000,
) -> AsyncIterator[list[Replica]]:
    """Start ``count`` servers on one cache and one Cal.com; stop them all on exit.

    Defaults chosen for tests: no shutdown drain and a short grace (SIGTERM
    should not cost seconds per replica). ``env`` overrides any
    ``AVAILABILITY_*`` setting, e.g. ``{"AVAILABILITY_CALCOM_RATE_LIMIT": "15"}``.
    The replicas are started concurrently and named ``A``, ``B``, ``C``...;
    each keeps its last ``log_lines`` stderr lines in ``.log``.
    """
    settings = {
        "AVAILABILITY_CACHE_URL": cache_url,
        "AVAILABILITY_CALCOM_URL": calcom_url,
        "AVAILABILITY_HTTP_ADDR": "127.0.0.1:0",
        "AVAILABILITY_SHUTDOWN_DRAIN": "0",
        "AVAILABILITY_SHUTDOWN_GRACE": "1",
        "AVAILABILITY_LOG_LEVEL": "INFO",
        # Only the days read (as the server tests' settings; see tests/conftest.py).
        "AVAILABILITY_FETCH_WINDOWS": "false",
        "AVAILABILITY_REFRESH_AHEAD": "0",
        **(env or {}),
    }
    if settings["AVAILABILITY_LOG_LEVEL"].upper() not in ("DEBUG", "INFO"):
        raise ValueError("replicas must log at INFO or DEBUG: the bound port is an INFO line")
    names = [chr(ord("A") + i) if i < 26 else f"R{i}" for i in range(count)]
    started = await asyncio.gather(
        *(_spawn(name, settings, startup_timeout, log_lines) for name in names),
        return_exceptions=True,
    )
    replicas = [r for r in started if isinstance(r, Replica)]
    try:
        failures = [r for r in started if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        yield replicas
    finally:
        await asyncio.gather(*(_stop_replica(r, stop_timeout) for r in replicas))


class RedisServer:
    """A private ``redis-server`` on a fixed loopback port, in a temporary directory.

    No persistence (``--save "" --appendonly no``): :meth:`stop` then
    :meth:`start` is a Redis that lost everything, on the same port, so the
    clients' URL stays valid. :meth:`freeze` / :meth:`thaw` (SIGSTOP /
    SIGCONT) is the other outage: connections hang instead of failing, and
    the data survives.
    """

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._binary = binary
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="availability-redis-")
        self._process: asyncio.subprocess.Process | None = None
        self._frozen = False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, timeout: float = 10.0) -> None:
        """Start on :attr:`port` and return once it answers PING."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        self._process = await asyncio.create_subprocess_exec(
            *_guarded(
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        _LIVE.add(self._process)
        self._frozen = False
        deadline = time.monotonic() + timeout
        while not await self._pong():
            if self._process.returncode is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop it (SIGTERM; SIGKILL after ``timeout``); the port is free again afterwards."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._frozen:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            self._frozen = False
        await _stop_process(process, timeout)

    def freeze(self) -> None:
        """SIGSTOP: the port stays open (the kernel still accepts), nothing is answered."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT: answer again, with every key it held."""
        if self._process is not None and self._frozen:
            self._process.send_signal(signal.SIGCONT)
            self._frozen = False

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Frozen for the block (see :meth:`freeze`), thawed however it ends."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    async def close(self) -> None:
        """Stop and remove the temporary directory."""
        await self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _pong(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 1.0
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Partition:
    """A TCP forwarder to ``127.0.0.1:target_port`` that can cut every connection.

    Cut, it drops the connections it carries and closes new ones at once, so
    clients fail fast while the server behind it keeps running and keeps its
    data (unlike :meth:`RedisServer.stop`); nothing sent during the cut ever
    arrives (unlike :meth:`RedisServer.freeze`, whose socket buffers deliver
    it late). Healed, it forwards again. Runs in the caller's event loop.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._cut = False
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def cut(self) -> None:
        self._cut = True
        for link in list(self._links):
            self._drop(link)

    def heal(self) -> None:
        self._cut = False

    async def __aenter__(self) -> Partition:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            far_reader, far_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, far_writer)
        self._links.add(link)
        for source, sink in ((reader, far_writer), (far_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink, link))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(65536):
                if self._cut:
                    break
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            self._drop(link)

    def _drop(self, link: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._links.discard(link)
        for writer in link:
            writer.transport.abort()
