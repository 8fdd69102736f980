"""The deadline budget: how long the core may wait for Cal.com on a caller's behalf.

A caller (the telephony agent) sets a gRPC deadline; an answer that arrives
after it is worth nothing, and a call that overruns it ends in
DEADLINE_EXCEEDED from the caller's side and a traceback in the server's log
(grpc logs the late answer it could not send). So the core answers by its
own, earlier deadline: the caller's remaining time minus a *reserve* kept for
answering (serving a stale bucket, encoding, the trip back). With no caller
deadline a default one applies, so no call waits for Cal.com indefinitely.

The reserve is ``max(reserve_min, reserve_share * remaining)``. Its default
share is 15 % rather than the 10 % one might expect: a caller measures its
deadline from before its request travels, the server from when the request
arrived, and the answer has to travel back and be scheduled on a busy
machine. With 10 % a 2 s caller got its UNAVAILABLE about 0.18 s before its
deadline on a loaded two-core machine, short of the 0.2 s an agent needs to
say something; 15 % (0.3 s at 2 s) leaves slack.

The core decides; the transport only passes the caller's remaining time.
Deadlines are real (monotonic) time: they are the caller's, not the cache's,
whose injected clock decides TTLs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Deadline", "DeadlinePolicy"]


class Deadline:
    """When the core must have its answer, on :func:`time.monotonic`.

    A plain slotted class, not a frozen dataclass: one is made per read, hits
    included, and a frozen dataclass's ``__init__`` costs several times more."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - time.monotonic())


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    default: float = 5.0
    """Seconds a call without a caller deadline may take."""
    reserve_share: float = 0.15
    """Share of the caller's remaining time kept for answering."""
    reserve_min: float = 0.05
    """The reserve's floor, seconds."""

    def __post_init__(self) -> None:
        if not self.default > 0:
            raise ValueError("default must be positive")
        if not 0 <= self.reserve_share < 1:
            raise ValueError("reserve_share must be in [0, 1)")
        if self.reserve_min < 0:
            raise ValueError("reserve_min must not be negative")

    def reserve(self, remaining: float) -> float:
        return max(self.reserve_min, self.reserve_share * remaining)

    def start(self, remaining: float | None) -> Deadline:
        """The core's deadline for a caller with ``remaining`` seconds (None: no deadline)."""
        total = self.default if remaining is None else remaining
        reserve = max(self.reserve_min, self.reserve_share * total)
        return Deadline(time.monotonic() + max(0.0, total - reserve))
