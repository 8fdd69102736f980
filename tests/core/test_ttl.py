from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from availability.core.ttl import TieredTtl

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("day", "count", "expected"),
    [
        (date(2026, 11, 23), 0, 30),  # empty beats everything
        (date(2027, 1, 1), 0, 30),
        (date(2026, 11, 23), 5, 60),  # today
        (date(2026, 11, 30), 5, 60),  # starts 6 d 18 h from now
        (date(2026, 12, 1), 5, 300),  # starts 7 d 18 h from now
        (date(2026, 11, 22), 5, 60),  # already started
    ],
)
def test_tiers(day: date, count: int, expected: float) -> None:
    assert TieredTtl().ttl(day, count, NOW) == expected


def test_custom_tiers_and_validation() -> None:
    policy = TieredTtl(empty=1, near=2, far=3, near_days=1)
    assert policy.ttl(date(2026, 11, 24), 1, NOW) == 2
    assert policy.ttl(date(2026, 11, 25), 1, NOW) == 3
    assert policy.longest == 3
    with pytest.raises(ValueError, match="near"):
        TieredTtl(near=0)


def test_tiers_name_the_class_each_ttl_is_for() -> None:
    policy = TieredTtl(empty=1, near=2, far=3, near_days=1)
    assert policy.tier(date(2026, 11, 24), 0, NOW) == "empty"
    assert policy.tier(date(2026, 11, 24), 1, NOW) == "near"
    assert policy.tier(date(2026, 11, 25), 1, NOW) == "far"
    assert [policy.of(t) for t in ("empty", "near", "far")] == [1, 2, 3]
