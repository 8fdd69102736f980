"""Slot availability service: one shared, race-safe cache in front of Cal.com's slots API."""

__version__ = "0.1.0"
