"""Slot availability service: one shared, race-safe cache in front of Cal.com's slots API."""

from __future__ import annotations

__all__ = ["DISTRIBUTION"]

DISTRIBUTION = "slot-availability"
"""The name this package is installed under (``pyproject.toml``)."""


def __getattr__(name: str) -> str:
    # The version is written once, in pyproject.toml: read from the installed metadata, on
    # demand, so that importing the package costs no metadata look-up.
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version(DISTRIBUTION)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
