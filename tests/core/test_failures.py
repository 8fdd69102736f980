"""Failure memory on the injected clock."""

from __future__ import annotations

from availability.core.clock import ManualClock
from availability.core.failures import FailureMemory
from availability.core.ports import UpstreamUnavailable
from tests.conftest import NOW


def test_a_failure_is_recalled_until_its_ttl_runs_out() -> None:
    clock = ManualClock(NOW.timestamp())
    memory = FailureMemory(clock=clock, ttl=1.0)
    error = UpstreamUnavailable("Cal.com failed with HTTP 500")
    memory.remember(("b", 1), error)
    assert memory.recall(("b", 1)) is error
    assert memory.recall(("b", 2)) is None  # another stamp: an invalidation since
    clock.advance(0.999)
    assert memory.recall(("b", 1)) is error
    clock.advance(0.001)
    assert memory.recall(("b", 1)) is None


def test_remembering_again_extends_and_expired_entries_do_not_pile_up() -> None:
    clock = ManualClock(NOW.timestamp())
    memory = FailureMemory(clock=clock, ttl=10.0)
    for i in range(100):
        memory.remember(("b", i), UpstreamUnavailable("down"))
        clock.advance(1)
    assert len(memory) == 9  # only the last 10 s: 91..99
    memory.remember(("b", 0), UpstreamUnavailable("down again"))
    clock.advance(5)
    assert memory.recall(("b", 0)) is not None
    assert len(memory) == 5  # 96..99 and 0 again


def test_a_zero_ttl_remembers_nothing() -> None:
    memory = FailureMemory(clock=ManualClock(NOW.timestamp()), ttl=0.0)
    memory.remember("b", UpstreamUnavailable("down"))
    assert memory.recall("b") is None
