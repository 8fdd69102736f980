"""A time-skipping asyncio event loop: virtual time that jumps to the next timer.

The lab (and any test that wants it) runs the real core, with its real
futures, tasks, ``asyncio.sleep`` and aiocache's expiry timers, on virtual
time: whenever nothing is ready to run, the loop's clock jumps straight to
the next scheduled timer instead of waiting for it. A simulated month of
traffic then takes seconds, and every run with the same inputs is the same.

How: asyncio's scheduler asks its selector to wait ``timeout`` seconds for
I/O when the next timer is that far away. The selector here polls without
waiting and advances the loop's virtual clock by ``timeout`` instead, so the
timer is due at once. Real I/O still works (it is polled), but time no
longer passes while it is in flight: use only in-process parts with it.
Written by hand because no maintained library offers this for plain asyncio
(temporalio's time-skipping environment is bound to its workflow server).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["TimeSkippingLoop", "run"]

T = TypeVar("T")


class _SkippingSelector(selectors.DefaultSelector):
    def __init__(self, loop_clock: list[float]) -> None:
        super().__init__()
        self._clock = loop_clock
        self.own_files = 0
        """Files the loop registers for itself (its wake-up pipe), set once it has."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # With only the loop's wake-up pipe registered there is nothing to poll: the loop
        # never sleeps, and a thread's call_soon_threadsafe queues its callback itself.
        # Skipping the system call matters when a simulation turns the loop a million times.
        events = super().select(0) if len(self.get_map()) > self.own_files else []
        if not events and timeout is not None and timeout > 0:
            self._clock[0] += timeout
        return events


class TimeSkippingLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and skips every idle wait."""

    def __init__(self, start: float = 0.0) -> None:
        self._virtual = [float(start)]
        selector = _SkippingSelector(self._virtual)
        super().__init__(selector)
        selector.own_files = len(selector.get_map())

    def time(self) -> float:
        return self._virtual[0]

    def clock(self, offset: float = 0.0) -> Callable[[], float]:
        """``offset + time()`` as a function: what a simulation hands the parts it runs as
        their clock, read several times per simulated request (one call instead of two)."""
        virtual = self._virtual
        return lambda: offset + virtual[0]


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh :class:`TimeSkippingLoop` starting at ``start``."""
    loop = TimeSkippingLoop(start)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
