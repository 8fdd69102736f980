"""The fast lane: a repeated GetSlots answered from its raw request bytes.

An agent asks the same question turn after turn. :class:`HitMemo` keeps, per
raw request (the exact bytes a caller sent), the encoded ``days`` of an
answer that came from the cache, with what the core said about it: until
when it holds (:attr:`~availability.core.cache.SlotsAnswer.valid_until`) and
the cache's invalidation generation read before the read began. A repeated
request is then one dict lookup, two comparisons and a freshness tail
encoded for this answer (so ``age`` stays true), with no parsing,
validation or cache read. The tail is encoded once per millisecond of age
(``age`` is true to the millisecond): under load many hits fall in the same
millisecond and then share one response object.

Only the normal path builds entries, and only from cache answers; misses,
stale answers, errors, bad bytes and ``fresh`` reads (never a cache answer)
take the normal path every time. Requests that differ in any byte (field
order included) are different entries: a missed reuse, never a wrong one.
The caller's role does not change an answer, so it is no part of the key
(auth runs before the memo is consulted).

With Redis, another replica's invalidation does not move this process's
generation; an entry then also ends when the trust window of the versions it
was built on closes (``trusted_for``, see
:mod:`availability.adapters.stores.tiered`), which every invalidation waits
out before it returns.

Memory: an entry holds its key (the request, ~40-60 bytes), the encoded
days (about 17 bytes a slot plus 15 a day), a small record and references to
the buckets it was read from (which it keeps alive should the store drop
them: at most ``max_entries`` times the range's days); bounded by
``max_entries`` (LRU).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from availability.core.buckets import Bucket
from availability.core.cache import SlotsAnswer, Source
from availability.core.clock import Clock
from availability.transport.grpc.wire import encode_cache_freshness, fetched_at_field

__all__ = ["HitMemo"]


class _Entry:
    __slots__ = (
        "age_ms",
        "buckets",
        "days_length",
        "fetched_at",
        "fetched_at_field",
        "generation",
        "note",
        "response",
        "trusted_until",
        "valid_until",
    )

    def __init__(
        self,
        answer: SlotsAnswer,
        fetched_at: float,
        days: bytes,
        generation: int,
        trusted_until: float,
        note: Mapping[str, Any],
    ) -> None:
        # The buckets (for counting a reuse as hits on them), not the whole answer.
        self.buckets = answer.buckets
        self.fetched_at = fetched_at
        self.fetched_at_field = fetched_at_field(fetched_at)
        self.valid_until = answer.valid_until
        # The days, then the tail of the last age served (-1: none yet); the days alone
        # are the response's first days_length bytes, not a second copy.
        self.response = days
        self.days_length = len(days)
        self.age_ms = -1
        self.note = note
        self.generation = generation
        self.trusted_until = trusted_until


class HitMemo:
    def __init__(
        self, max_entries: int, *, clock: Clock, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock``: the core's (``valid_until``); ``monotonic``: the store's trust clock."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self.monotonic = monotonic
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.hits = 0
        """Requests answered here (for metrics)."""

    def __len__(self) -> int:
        return len(self._entries)

    def answer(
        self, request: bytes, generation: int
    ) -> tuple[bytes, tuple[Bucket, ...], Mapping[str, Any], float] | None:
        """The whole serialized response for ``request``, the buckets it was read from,
        the note kept with it and its age now (to the millisecond); or None: take the
        normal path."""
        entry = self._entries.get(request)
        if entry is None:
            return None
        now = self._clock()
        if (
            now >= entry.valid_until
            or entry.generation != generation
            or self.monotonic() >= entry.trusted_until
        ):
            del self._entries[request]
            return None
        self._entries.move_to_end(request)
        self.hits += 1
        age_ms = max(round((now - entry.fetched_at) * 1000), 0)
        if age_ms != entry.age_ms:
            tail = encode_cache_freshness(entry.fetched_at_field, age_ms / 1000)
            entry.response = entry.response[: entry.days_length] + tail
            entry.age_ms = age_ms
        return entry.response, entry.buckets, entry.note, age_ms / 1000

    def keep(
        self,
        request: bytes,
        answer: SlotsAnswer,
        days: bytes,
        generation: int,
        began: float,
        note: Mapping[str, Any],
    ) -> None:
        """Remember ``days`` (the encoding of ``answer``) if the answer may be reused.

        ``generation`` and ``began`` (:attr:`monotonic`): read before the read that gave
        ``answer`` began, so the entry ends no later than the core's promises do.
        ``note``: what the RPC's log line says about the request (given back on hits).
        """
        freshness = answer.freshness
        if freshness.source is not Source.CACHE or freshness.fetched_at is None:
            return
        if self._clock() >= answer.valid_until or answer.trusted_for <= 0:
            return
        self._entries[request] = _Entry(
            answer, freshness.fetched_at, days, generation, began + answer.trusted_for, note
        )
        self._entries.move_to_end(request)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
