"""The time-skipping loop: virtual time jumps over idle waits, in order, and real I/O works."""

from __future__ import annotations

import asyncio
import socket
import time

from availability.lab.timeskip import TimeSkippingLoop, run


def test_a_month_of_sleeps_takes_no_real_time() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()

        async def after(delay: float) -> float:
            await asyncio.sleep(delay)
            return loop.time()

        return list(await asyncio.gather(after(0.55), after(3600), after(30 * 86_400)))

    started = time.monotonic()
    assert run(main()) == [0.55, 3600, 30 * 86_400]
    assert time.monotonic() - started < 5  # generous: a real month would never finish


def test_timers_fire_in_order_from_the_start_given() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(2.0, lambda: fired.append(("b", loop.time())))
        loop.call_later(1.0, lambda: fired.append(("a", loop.time())))
        await asyncio.sleep(3.0)

    run(main(), start=100.0)
    assert fired == [("a", 101.0), ("b", 102.0)]


def test_real_sockets_still_work() -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            right.setblocking(False)
            await loop.sock_sendall(left, b"ping")
            return await loop.sock_recv(right, 4)

    assert run(main()) == b"ping"


def test_the_loop_is_an_asyncio_loop() -> None:
    loop = TimeSkippingLoop(5.0)
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.time() == 5.0
    finally:
        loop.close()
