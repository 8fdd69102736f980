"""TTL policies the lab compares, by name: ``fixed:SECONDS``, ``tiered``, ``adaptive[:COST]``,
each ``[@SHARE]``.

``fixed:45`` gives every bucket 45 s (the seed's single TTL); ``tiered`` is
the service's default tiers (the settings' defaults: ``AVAILABILITY_TTL_EMPTY``,
``_NEAR``, ``_FAR``); ``adaptive`` is the real
:class:`~availability.core.adaptive_ttl.AdaptiveTtl` with the settings'
defaults (those tiers as its start, ``AVAILABILITY_TTL_MIN``/``_MAX``,
``AVAILABILITY_TTL_STALE_COST``), ``adaptive:COST`` with another stale cost
(to explore the trade-off). A suffix ``@SHARE`` runs that policy with its own
share of reported bookings instead of ``--signaled``: ``fixed:60@0`` is the
seed's recommendation as the seed meant it, a TTL and no event invalidation,
so it can stand in one table beside policies that have events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from availability.config import Settings
from availability.core.adaptive_ttl import AdaptiveTtl
from availability.core.ttl import TieredTtl, TtlPolicy

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
    adaptive: tuple[float, float, float] | None = None
    """(minimum, maximum, stale cost) of an adaptive policy starting at the tiers; None:
    the tiers, fixed."""

    @property
    def fixed(self) -> float | None:
        """The single TTL of a fixed policy (the closed form applies), else None."""
        if self.adaptive is not None:
            return None
        return self.near if self.empty == self.near == self.far else None

    def ttl(self) -> TtlPolicy:
        """A new policy object (an adaptive one learns: one per run)."""
        tiers = TieredTtl(empty=self.empty, near=self.near, far=self.far, near_days=self.near_days)
        if self.adaptive is None:
            return tiers
        minimum, maximum, stale_cost = self.adaptive
        return AdaptiveTtl(tiers, minimum=minimum, maximum=maximum, stale_cost=stale_cost)


def parse_policy(text: str) -> Policy:
    """``fixed:SECONDS``, ``tiered`` or ``adaptive[:COST]``, optionally ``@SHARE``; raises
    ValueError naming what is wrong."""
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
        return _tiers("tiered")
    if name == "adaptive":
        cost = _default("ttl_stale_cost")
        if arg:
            try:
                cost = float(arg)
            except ValueError:
                raise ValueError(
                    f"policy {text!r}: expected adaptive or adaptive:COST, e.g. adaptive:100"
                ) from None
            if not cost > 0:
                raise ValueError(f"policy {text!r}: the stale cost must be positive")
        bounds = (_default("ttl_min"), _default("ttl_max"), cost)
        return replace(_tiers(spec if arg else "adaptive"), adaptive=bounds)
    raise ValueError(f"unknown policy {text!r}: expected fixed:SECONDS, tiered or adaptive[:COST]")


def _tiers(name: str) -> Policy:
    return Policy(
        name,
        _default("ttl_empty"),
        _default("ttl_near"),
        _default("ttl_far"),
        _default("ttl_near_days"),
    )


def _default(setting: str) -> float:
    value = Settings.model_fields[setting].default
    assert isinstance(value, int | float)
    return float(value)
