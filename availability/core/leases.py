"""Cluster-wide single-flight: one replica fetches, the others wait for its result.

A lease is a key set only if absent, with a TTL (``SET NX PX`` on Redis;
always granted on ``memory://``, where the in-process single-flight already
makes one fetcher). Whoever holds it fetches; the others poll the store
with backoff (no pub/sub, whose messages can be lost) until the result
appears, the lease vanishes without one (its holder died: fetch yourself)
or their bound runs out. A lease holds a random integer token, so reading
it through the store's version read tells whether it is still held.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

__all__ = ["lease_token", "polls"]

FIRST_POLL = 0.005
"""Seconds before the first look: a fetch that just finished elsewhere is seen soon."""
MOST_BETWEEN_POLLS = 0.1
"""Seconds between looks at most: bounds the delay after the holder finishes."""


def lease_token() -> str:
    """A random token that reads as an integer (like a version) when fetched back."""
    return str(secrets.randbits(62))


async def polls(bound: float) -> AsyncIterator[None]:
    """Yield after each backoff pause until ``bound`` seconds have passed.

    Real (monotonic) time on purpose: this waits for another process, whose
    progress the injected clock knows nothing about.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    delay = FIRST_POLL
    while loop.time() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, MOST_BETWEEN_POLLS)
        yield
