"""Start coroutines eagerly: run each at once up to its first wait, a task only if it waits.

The lab starts one coroutine per simulated query; most of them are cache hits
that finish without ever waiting. Scheduling each as a task costs a task
object, a callback and a turn of the loop per query, which is most of what
the simulation harness spends per query. Started eagerly, a coroutine runs
at once up to its first ``await`` that really waits, and goes on from there
like a task would: its wake-up is registered on what it waits for right
there, and every later step runs when that is done, exactly as a task's.

Python 3.12 has this built in (``Task(..., eager_start=True)``), and its
``wait_for`` needs a current task, so there a real eager task is used. On
3.11 a coroutine is stepped here directly; nothing 3.11's asyncio offers the
core (``wait``, ``wait_for``, ``gather``, ``shield``, ``sleep``) needs a
current task.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["EagerRuns"]


class EagerRuns:
    """Coroutines started eagerly on the running loop, and a future for when all are done.

    ``finished`` is done one loop turn after the last run ends (once
    :meth:`close` was called), as a task's done callback would see it; a run
    that raised makes it raise.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = 0
        self._closed = False
        # Held until they end, as one holds tasks: the loop itself only knows what they
        # wait for.
        self._waiting: set[object] = set()
        self.finished: asyncio.Future[None] = self._loop.create_future()

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._running += 1
        if sys.version_info >= (3, 12):
            task = asyncio.Task(coro, loop=self._loop, eager_start=True)
            if not task.done():
                self._waiting.add(task)
            task.add_done_callback(self._task_done)
        else:
            _Run(coro, self._waiting, self._run_done).step()

    def fail(self, error: BaseException) -> None:
        """What starts the runs failed: ``finished`` raises ``error`` (no more will start)."""
        self._closed = True
        self._end(error)

    def close(self) -> None:
        """No more runs will be started: ``finished`` is done once the running ones are."""
        self._closed = True
        if not self._running:
            self._end(None)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A done callback: already a turn after the task ended.
        self._waiting.discard(task)
        self._running -= 1
        error = None if task.cancelled() else task.exception()
        if error is not None or (self._closed and not self._running):
            self._end(error)

    def _run_done(self, error: BaseException | None) -> None:
        self._running -= 1
        if error is not None or (self._closed and not self._running):
            # A turn later, where a task's done callback would see it.
            self._loop.call_soon(self._end, error)

    def _end(self, error: BaseException | None) -> None:
        if self.finished.done():
            return
        if error is None:
            self.finished.set_result(None)
        else:
            self.finished.set_exception(error)


class _Run:
    """A coroutine stepped the way ``asyncio.Task`` steps one (3.11, no cancellation)."""

    __slots__ = ("_coro", "_done", "_waiting")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        waiting: set[object],
        done: Callable[[BaseException | None], None],
    ) -> None:
        self._coro = coro
        self._waiting = waiting
        self._done = done

    def step(self, _waited: object = None) -> None:
        try:
            waits_for = self._coro.send(None)
        except StopIteration:
            self._waiting.discard(self)
            self._done(None)
            return
        except BaseException as exc:  # surfaced through EagerRuns.finished, as gather would
            self._waiting.discard(self)
            self._done(exc)
            return
        self._waiting.add(self)
        if waits_for is None:  # a bare yield (sleep(0)): another turn
            asyncio.get_running_loop().call_soon(self.step)
            return
        # What asyncio.Task does with an awaited future: wake up when it is done; the
        # coroutine then reads its outcome itself (Future.__await__).
        waits_for._asyncio_future_blocking = False
        waits_for.add_done_callback(self.step)
