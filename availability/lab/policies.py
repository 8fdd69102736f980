"""TTL policies the lab compares, by name: ``fixed:SECONDS``, ``tiered``.

``fixed:45`` gives every bucket 45 s (the seed's single TTL); ``tiered`` is
the service's default tiers (empty day 30 s, within 7 days 60 s, later 300 s,
the settings' defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

from availability.config import Settings
from availability.core.ttl import TieredTtl

__all__ = ["Policy", "parse_policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    empty: float
    near: float
    far: float
    near_days: float

    @property
    def fixed(self) -> float | None:
        """The single TTL of a fixed policy (the closed form applies), else None."""
        return self.near if self.empty == self.near == self.far else None

    def ttl(self) -> TieredTtl:
        return TieredTtl(empty=self.empty, near=self.near, far=self.far, near_days=self.near_days)


def parse_policy(text: str) -> Policy:
    """``fixed:SECONDS`` or ``tiered``; raises ValueError naming what is wrong."""
    name, _, arg = text.partition(":")
    if name == "fixed":
        try:
            seconds = float(arg)
        except ValueError:
            raise ValueError(f"policy {text!r}: expected fixed:SECONDS, e.g. fixed:60") from None
        if not seconds > 0:
            raise ValueError(f"policy {text!r}: the TTL must be positive")
        return Policy(f"fixed:{seconds:g}", seconds, seconds, seconds, 7.0)
    if name == "tiered" and not arg:
        defaults = Settings.model_fields
        return Policy(
            "tiered",
            _default(defaults["ttl_empty"].default),
            _default(defaults["ttl_near"].default),
            _default(defaults["ttl_far"].default),
            _default(defaults["ttl_near_days"].default),
        )
    raise ValueError(f"unknown policy {text!r}: expected fixed:SECONDS or tiered")


def _default(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)
