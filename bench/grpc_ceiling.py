"""Cache hits against the gRPC ceiling: the service beside a bare grpc.aio handler, with h2load.

DESIGN.md sets the bar: a hit should cost little more than a bare grpc.aio
handler returning the same stored bytes. This runs both as real processes,
alternating, in one run, so the machine's noise hits both alike:

- the service (``availability serve`` on the sandbox, Cal.com latency 0),
  its range warmed so every request is a cache hit (checked: the warm call
  must answer SOURCE_CACHE);
- a bare grpc.aio server (this file, ``--bare FILE``) whose generic handler
  returns the service's exact response bytes for the same method.

For each configuration (cache ``memory`` / ``redis``, a 1-day and a 7-day
range, with and without a token) it prints throughput (h2load, ``-c`` x
``-m`` streams) and sequential latency (``-c 1 -m 1``), the service's ratio
to bare for each round, and the median over the rounds. h2load counts HTTP
200 as success whatever the grpc-status, so the statuses are checked with a
real gRPC call before each load.

    .venv/bin/python bench/grpc_ceiling.py [--rounds 3] [--requests 15000] [--cache memory redis]
        [--loop asyncio|uvloop]

Both servers run on the same event loop (``--loop``, asyncio by default), so a
ratio never credits uvloop to the service; run it once per loop to see what
uvloop itself gives.

Each round's figures are themselves interleaved: its requests are split into
``--slices`` runs per server (15 by default), the two servers alternating ABBA,
and each server's throughput is its requests over its total time. A burst of
other work on the machine that lasts a few seconds then falls on both alike;
whole-round runs back to back moved by about 20 % round to round.

Nothing is pinned to a CPU: grpc's core serves from threads of its own beside
the event loop, and a server pinned to one CPU of this 2-CPU machine measured
about half its unpinned throughput, the service and the bare handler alike;
that is not how either runs.

``--instructions N`` measures instead what a noisy machine cannot disturb: both
servers run under valgrind's callgrind (instrumentation switched on only while
h2load sends sequential requests), and the instructions of N requests, less
those of a first window of 200 (connection set-up, code seen for the first
time), divided by N are each server's instructions per request. With Redis
the trust window is stretched by valgrind's slowdown (50x, to 2.5 s), so that
it renews after as many hits as at full speed. Needs valgrind.

Needs h2load (Debian: nghttp2-client) and, for ``redis``, redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from availability.sandbox import serve_sandbox
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.helpers.redis_db import flushed_url
from tests.helpers.replicas import running_replicas

METHOD = "/availability.v1.AvailabilityService/GetSlots"
TOKEN = "bench-reader-token"
_THROUGHPUT = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")
_SUCCEEDED = re.compile(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded")
_MEAN = re.compile(r"time for request:\s+\S+\s+\S+\s+(\S+)")


@dataclass(frozen=True, slots=True)
class Load:
    rps: float
    mean_ms: float


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    return (
        value / 1000
        if text.endswith("us")
        else value * 1000
        if text.endswith("s") and not text.endswith("ms")
        else value
    )


async def h2load(
    port: int, body: Path, *, requests: int, clients: int, streams: int, token: bool
) -> Load:
    argv = [
        "h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams),
        "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body),
    ]  # fmt: skip
    if token:
        argv += ["-H", f"authorization: Bearer {TOKEN}"]
    process = await asyncio.create_subprocess_exec(
        *argv, f"http://127.0.0.1:{port}{METHOD}", stdout=asyncio.subprocess.PIPE
    )
    out = (await process.communicate())[0].decode()
    done = _SUCCEEDED.search(out)
    rps = _THROUGHPUT.search(out)
    mean = _MEAN.search(out)
    if not (done and rps and mean) or done.group(1) != done.group(2):
        raise RuntimeError(f"h2load failed:\n{out}")
    return Load(float(rps.group(1)), _ms(mean.group(1)))


def _framed(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


@contextlib.asynccontextmanager
async def bare_server(
    response: bytes, loop: str, *, callgrind_out: Path | None = None
) -> AsyncIterator[Any]:
    """This file in ``--bare`` mode: a grpc.aio server returning ``response`` for METHOD,
    on the same event loop (``asyncio`` or ``uvloop``) as the service it is compared with.
    Yields its port, or with ``callgrind_out`` its :class:`_Callgrind` (run under it)."""
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as file:
        file.write(response)
    argv = [sys.executable, __file__, "--bare", file.name, "--loop", loop]
    try:
        if callgrind_out is not None:
            async with callgrind(argv, {}, callgrind_out) as server:
                yield server
            return
        process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        try:
            assert process.stdout is not None
            port = int((await process.stdout.readline()).decode().split()[-1])
            yield port
        finally:
            process.terminate()
            await process.wait()
    finally:
        await asyncio.to_thread(Path(file.name).unlink)


async def serve_bare(path: str) -> None:
    response = await asyncio.to_thread(Path(path).read_bytes)

    async def get_slots(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return response

    server = grpc.aio.server()
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(get_slots)
    service, method = METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving on {port}", flush=True)
    await server.wait_for_termination()


async def checked_response(target: str, request: pb.GetSlotsRequest, token: bool) -> bytes:
    """Warm the range, then return the hit's raw response bytes (it must be a cache hit)."""
    metadata = (("authorization", f"Bearer {TOKEN}"),) if token else ()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.AvailabilityServiceStub(channel)
        await stub.GetSlots(request, metadata=metadata, timeout=10)
        # The hosts' look-up follows a cold answer: a second read may wait for it.
        await stub.GetSlots(request, metadata=metadata, timeout=10)
        answer = await stub.GetSlots(request, metadata=metadata, timeout=10)
        if answer.freshness.source != pb.Freshness.SOURCE_CACHE:
            raise RuntimeError("the warm range was not answered from the cache")
        raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        data: bytes = await raw(request.SerializeToString(), metadata=metadata, timeout=10)
        return data


async def one_config(cache: str, days: int, token: bool, args: argparse.Namespace) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    request = pb.GetSlotsRequest(event_type_id=1001, time_zone="Europe/Berlin")
    request.start.FromDatetime(start)
    request.end.FromDatetime(start + timedelta(days=days))
    env = {
        "AVAILABILITY_SANDBOX_LATENCY_MIN": "0",
        "AVAILABILITY_SANDBOX_LATENCY_MAX": "0",
        "AVAILABILITY_EVENT_LOOP": args.loop,
    }
    if token:
        env["AVAILABILITY_API_TOKENS"] = f"{TOKEN}:reader"
    cache_url = "memory://" if cache == "memory" else flushed_url(15)
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "request.bin"
        body.write_bytes(_framed(request.SerializeToString()))
        async with contextlib.AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(
                serve_sandbox(latency=(0.0, 0.0), rate_limit_per_minute=None)
            )
            if args.instructions:
                await _instructions(
                    cache, days, token, cache_url, sandbox.url, env, request, body, args
                )
                return
            (service,) = await stack.enter_async_context(
                running_replicas(1, cache_url=cache_url, calcom_url=sandbox.url, env=env)
            )
            response = await checked_response(service.target, request, token)
            bare_port = await stack.enter_async_context(bare_server(response, args.loop))
            await _rounds(
                cache, days, token, int(service.target.rpartition(":")[2]), bare_port, body, args
            )


_FIRST_WINDOW = 200
_VALGRIND_SLOWDOWN = 50
_PORT = re.compile(r"serving (?:\S+ )?on (?:[\d.]+:)?(\d+)")
_TOTALS = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class _Callgrind:
    pid: int
    port: int
    out: Path


@contextlib.asynccontextmanager
async def callgrind(argv: list[str], env: dict[str, str], out: Path) -> AsyncIterator[_Callgrind]:
    """``argv`` under callgrind, instrumentation off until :func:`instructions` turns it on;
    its port is read from its "serving" line."""
    process = await asyncio.create_subprocess_exec(
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
        *argv, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        port = None
        while port is None:
            line = (await process.stdout.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError(f"{argv} did not start under valgrind")
            if found := _PORT.search(line):
                port = int(found.group(1))
        drain = asyncio.create_task(process.stdout.read())  # a full pipe would block it
        yield _Callgrind(process.pid, port, out)
    finally:
        process.terminate()
        await process.wait()
        if drain is not None:
            await drain


async def _control(server: _Callgrind, *argv: str) -> None:
    done = await asyncio.create_subprocess_exec(
        "callgrind_control", *argv, str(server.pid), stdout=asyncio.subprocess.DEVNULL
    )
    if await done.wait():
        raise RuntimeError(f"callgrind_control {argv} failed")


async def instructions(server: _Callgrind, body: Path, requests: int, token: bool) -> float:
    """Instructions per sequential request: two windows, the first one subtracted."""
    totals = []
    for count in (_FIRST_WINDOW, _FIRST_WINDOW + requests):
        await _control(server, "--instr=on")
        await h2load(server.port, body, requests=count, clients=1, streams=1, token=token)
        await _control(server, "--dump")
        await _control(server, "--instr=off")
        dumps = sorted(server.out.parent.glob(f"{server.out.name}.{server.pid}.*"))
        text = await asyncio.to_thread(dumps[-1].read_text, errors="replace")
        found = _TOTALS.search(text)
        if found is None:
            raise RuntimeError(f"no totals in {dumps[-1]}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / requests


async def _instructions(
    cache: str,
    days: int,
    token: bool,
    cache_url: str,
    calcom_url: str,
    env: dict[str, str],
    request: pb.GetSlotsRequest,
    body: Path,
    args: argparse.Namespace,
) -> None:
    service_env = {
        **env,
        # Under valgrind a hit is ~50x slower: stretch the trust window as much, so a
        # window still holds a few hundred hits before a read renews it, as at full speed.
        "AVAILABILITY_LOCAL_TRUST": str(0.05 * _VALGRIND_SLOWDOWN),
        "AVAILABILITY_CACHE_URL": cache_url,
        "AVAILABILITY_CALCOM_URL": calcom_url,
        "AVAILABILITY_GRPC_ADDR": "127.0.0.1:0",
        "AVAILABILITY_HTTP_ADDR": "127.0.0.1:0",
        "AVAILABILITY_SHUTDOWN_DRAIN": "0",
        "AVAILABILITY_SHUTDOWN_GRACE": "1",
    }
    serve = [sys.executable, "-c", "from availability.cli import main; main()", "serve"]
    with tempfile.TemporaryDirectory() as folder:
        async with callgrind(serve, service_env, Path(folder) / "service") as service:
            target = f"127.0.0.1:{service.port}"
            response = await checked_response(target, request, token)
            async with bare_server(
                response, args.loop, callgrind_out=Path(folder) / "bare"
            ) as bare:
                ours = await instructions(service, body, args.instructions, token)
                theirs = await instructions(bare, body, args.instructions, token)
    print(
        f"= {cache:>6} {days}d {'token' if token else 'open'}: {ours / 1000:.0f}k instructions "
        f"per request, bare {theirs / 1000:.0f}k -> {ours / theirs:.2f}x "
        f"({args.instructions} sequential requests, {args.loop})",
        flush=True,
    )


async def _interleaved(
    port: int, bare: int, body: Path, slices: int, token: bool, **load: int
) -> tuple[Load, Load]:
    """The service's and the bare server's figures for ``load``, each the sum of
    ``slices`` runs of an equal share of its requests, the two alternating ABBA: a
    burst on the machine that lasts seconds then lands on both alike."""
    share = {**load, "requests": max(1, load["requests"] // slices)}
    runs: dict[int, list[Load]] = {port: [], bare: []}
    for turn in range(slices):
        for target in (port, bare) if turn % 2 == 0 else (bare, port):
            runs[target].append(await h2load(target, body, token=token, **share))
    return _summed(runs[port]), _summed(runs[bare])


def _summed(runs: list[Load]) -> Load:
    """Runs of equal size as one: requests over total time, and the mean latency."""
    return Load(
        len(runs) / sum(1 / run.rps for run in runs),
        statistics.fmean(run.mean_ms for run in runs),
    )


async def _rounds(
    cache: str, days: int, token: bool, port: int, bare: int, body: Path, args: argparse.Namespace
) -> None:
    load = {"requests": args.requests, "clients": args.clients, "streams": args.streams}
    sequential = {"requests": args.sequential, "clients": 1, "streams": 1}
    throughput: list[float] = []
    latency: list[float] = []
    # Untimed, once per server: the first configuration of a run measured 0.1x lower
    # than the same one run later, before this warm-up (first runs of fresh processes).
    await _interleaved(port, bare, body, 2, token, **load)
    for _ in range(args.rounds):
        ours, theirs = await _interleaved(port, bare, body, args.slices, token, **load)
        ours_seq, theirs_seq = await _interleaved(
            port, bare, body, args.slices, token, **sequential
        )
        throughput.append(ours.rps / theirs.rps)
        latency.append(ours_seq.mean_ms / theirs_seq.mean_ms)
        print(
            f"  {cache:>6} {days}d {'token' if token else 'open ':>5}  "
            f"service {ours.rps:>7.0f} req/s, bare {theirs.rps:>7.0f} req/s"
            f" -> {throughput[-1]:.2f}x"
            f" | sequential {ours_seq.mean_ms:.3f} vs {theirs_seq.mean_ms:.3f} ms"
            f" -> {latency[-1]:.2f}x",
            flush=True,
        )
    print(
        f"= {cache:>6} {days}d {'token' if token else 'open'}: throughput "
        f"{statistics.median(throughput):.2f}x bare, sequential latency "
        f"{statistics.median(latency):.2f}x bare (medians of {args.rounds} rounds)",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: install it (Debian/Ubuntu: apt-get install valgrind)")
    if shutil.which("h2load") is None:
        raise SystemExit(
            "h2load not found: install it (Debian/Ubuntu: apt-get install nghttp2-client)"
        )
    started = time.monotonic()
    print(f"# event loop {args.loop} (service and bare); load {_load()}", flush=True)
    for cache in args.cache:
        for days in args.days:
            for token in (False, True) if args.tokens else (False,):
                await one_config(cache, days, token, args)
    print(f"({time.monotonic() - started:.0f} s; load {_load()})")


def _load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{each:.2f}" for each in os.getloadavg())


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=15000)
    parser.add_argument("--sequential", type=int, default=2000, help="requests of the -c1 -m1 run")
    parser.add_argument(
        "--slices", type=int, default=15, help="alternating runs per server in each round"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument(
        "--cache", nargs="+", default=["memory", "redis"], choices=["memory", "redis"]
    )
    parser.add_argument("--days", nargs="+", type=int, default=[1, 7])
    parser.add_argument("--no-tokens", dest="tokens", action="store_false")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="instructions per request under callgrind, over N sequential requests",
    )
    parser.add_argument(
        "--loop",
        default="asyncio",
        choices=["asyncio", "uvloop"],
        help="the event loop of both the service and the bare server",
    )
    return parser.parse_args()


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    import uvloop  # noqa: PLC0415  (optional)

    return uvloop.new_event_loop


if __name__ == "__main__":
    arguments = parse()
    if arguments.bare:
        with asyncio.Runner(loop_factory=_loop_factory(arguments.loop)) as runner:
            runner.run(serve_bare(arguments.bare))
    else:
        asyncio.run(main(arguments))
