"""A loopback stand-in for Cal.com: a fake calendar behind Cal.com's HTTP API.

Used by the default run mode (no real Cal.com configured), the integration
tests, the state-machine test and the demo. See :mod:`.calendar` for the
default fixture's hosts and event types.
"""

from availability.sandbox.app import Hold, RecordedRequest, RequestLog, Sandbox, Trickle
from availability.sandbox.calendar import (
    Booking,
    EventType,
    Host,
    InvalidDuration,
    SandboxCalendar,
    SandboxError,
    SlotUnavailable,
    Team,
    UnknownBooking,
    UnknownEventType,
    default_calendar,
)
from availability.sandbox.server import RunningSandbox, serve_sandbox

__all__ = [
    "Booking",
    "EventType",
    "Hold",
    "Host",
    "InvalidDuration",
    "RecordedRequest",
    "RequestLog",
    "RunningSandbox",
    "Sandbox",
    "SandboxCalendar",
    "SandboxError",
    "SlotUnavailable",
    "Team",
    "Trickle",
    "UnknownBooking",
    "UnknownEventType",
    "default_calendar",
    "serve_sandbox",
]
