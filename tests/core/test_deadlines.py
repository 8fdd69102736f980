"""The deadline budget: the core's deadline is the caller's minus a reserve for answering."""

from __future__ import annotations

import time

import pytest

from availability.core.deadlines import DeadlinePolicy


def test_the_reserve_is_a_share_of_the_remaining_time_with_a_floor() -> None:
    policy = DeadlinePolicy(default=5.0, reserve_share=0.15, reserve_min=0.05)
    assert policy.reserve(2.0) == pytest.approx(0.3)  # the 0.2 s a 2 s caller needs, and slack
    assert policy.reserve(3.0) == pytest.approx(0.45)
    assert policy.reserve(0.1) == pytest.approx(0.05)  # the floor


def test_the_core_deadline_comes_before_the_callers() -> None:
    policy = DeadlinePolicy()
    before = time.monotonic()
    deadline = policy.start(2.0)
    assert before + 2.0 - policy.reserve(2.0) <= deadline.at <= time.monotonic() + 1.7
    assert deadline.remaining() <= 1.7


def test_without_a_caller_deadline_the_default_applies() -> None:
    policy = DeadlinePolicy(default=5.0)
    deadline = policy.start(None)
    assert 0 < deadline.remaining() <= 5.0 - policy.reserve(5.0)


def test_an_expired_caller_deadline_leaves_nothing_not_a_negative_wait() -> None:
    policy = DeadlinePolicy()
    assert policy.start(0.01).remaining() == 0.0
    assert policy.start(-1.0).remaining() == 0.0


@pytest.mark.parametrize(
    "kwargs", [{"default": 0.0}, {"reserve_share": 1.0}, {"reserve_min": -0.1}]
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        DeadlinePolicy(**kwargs)
