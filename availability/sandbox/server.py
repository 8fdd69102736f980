"""Run the sandbox on a loopback port: the default upstream when no Cal.com is configured.

It shares the caller's event loop (via :func:`serve_asgi`), so tests can mutate
the calendar, inject faults and release holds between awaits with no locking.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from availability.core.clock import Clock, system_clock
from availability.sandbox.app import Hold, RequestLog, Sandbox
from availability.sandbox.calendar import SandboxCalendar, default_calendar
from availability.transport.http.serving import serve_asgi

__all__ = ["RunningSandbox", "serve_sandbox"]


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    """A started sandbox: where it listens, its calendar, and its test hooks."""

    url: str
    """Base URL without a trailing slash, e.g. ``http://127.0.0.1:8123``."""
    sandbox: Sandbox

    @property
    def calendar(self) -> SandboxCalendar:
        return self.sandbox.calendar

    @property
    def requests(self) -> RequestLog:
        return self.sandbox.requests

    def fail_next(
        self,
        status: int,
        body: bytes | str | Mapping[str, Any] | None = None,
        count: int = 1,
        *,
        path: str = "/v2/slots",
    ) -> None:
        self.sandbox.fail_next(status, body, count, path=path)

    def clear_faults(self) -> None:
        self.sandbox.clear_faults()

    def hold(self, *, path: str = "/v2/slots") -> Hold:
        return self.sandbox.hold(path=path)

    def reset(self) -> None:
        """Forget requests, throttling state and faults; release all holds."""
        self.sandbox.reset()


@contextlib.asynccontextmanager
async def serve_sandbox(
    calendar: SandboxCalendar | None = None,
    *,
    clock: Clock | None = None,
    latency: tuple[float, float] = (0.3, 0.8),
    rate_limit_per_minute: int | None = 120,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int | None = None,
) -> AsyncIterator[RunningSandbox]:
    """Serve a sandbox until the block exits.

    Without a ``calendar`` it serves :func:`default_calendar` on ``clock``
    (default: the system clock). With one, ``clock`` defaults to the calendar's,
    so throttling windows and error timestamps follow the same time as slots.
    """
    if calendar is None:
        calendar = default_calendar(clock or system_clock)
    sandbox = Sandbox(
        calendar,
        clock=clock,
        latency=latency,
        rate_limit_per_minute=rate_limit_per_minute,
        api_key=api_key,
        seed=seed,
    )
    async with serve_asgi(sandbox.app, host, port) as server:
        try:
            yield RunningSandbox(server.url, sandbox)
        finally:
            sandbox.release_holds()  # parked requests would stall the server's shutdown
