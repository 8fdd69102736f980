"""TTL policies the lab compares, by name: ``fixed:SECONDS``, ``tiered``, each ``[@SHARE]``.

``fixed:45`` gives every bucket 45 s (the seed's single TTL); ``tiered`` is
the service's default tiers (empty day 30 s, within 7 days 60 s, later 300 s,
the settings' defaults). A suffix ``@SHARE`` runs that policy with its own
share of reported bookings instead of ``--signaled``: ``fixed:60@0`` is the
seed's recommendation as the seed meant it, a TTL and no event invalidation,
so it can stand in one table beside policies that have events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    signaled: float | None = None
    """This policy's share of reported bookings; None: the workload's."""

    @property
    def fixed(self) -> float | None:
        """The single TTL of a fixed policy (the closed form applies), else None."""
        return self.near if self.empty == self.near == self.far else None

    def ttl(self) -> TieredTtl:
        return TieredTtl(empty=self.empty, near=self.near, far=self.far, near_days=self.near_days)


def parse_policy(text: str) -> Policy:
    """``fixed:SECONDS`` or ``tiered``, optionally ``@SHARE``; raises ValueError naming
    what is wrong."""
    spec, at, share = text.partition("@")
    policy = _parse_ttl(spec, text)
    if not at:
        return policy
    try:
        signaled = float(share)
    except ValueError:
        raise ValueError(f"policy {text!r}: expected @SHARE with SHARE in 0..1") from None
    if not 0.0 <= signaled <= 1.0:
        raise ValueError(f"policy {text!r}: the reported share must be in 0..1")
    return replace(policy, name=text, signaled=signaled)


def _parse_ttl(spec: str, text: str) -> Policy:
    name, _, arg = spec.partition(":")
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
