"""Typed clients of the slot availability service, for the agent backend and the booking service.

The agent backend reads slots; the booking service reports every change to
bookings and checks a slot just before booking it. Both go through the stubs
generated from the one contract (``availability.v1``), so they can never
disagree on keys or scopes. Sync and asyncio clients have the same methods::

    from datetime import UTC, datetime, timedelta
    from availability_client import AgentClient

    with AgentClient("127.0.0.1:50051", token="...") as agent:
        now = datetime.now(UTC)
        slots = agent.get_slots(1001, now, now + timedelta(days=7), time_zone="Europe/Berlin")
        first = slots.first_free()

Every failed call raises an :class:`AvailabilityError` (never a ``grpc.RpcError``).
This package imports grpcio, protobuf, the google.rpc messages and the generated
code only; none of the server.
"""

from availability_client._agent import AgentClient, AsyncAgentClient
from availability_client._booking import AsyncBookingClient, BookingClient
from availability_client._channel import TlsConfig
from availability_client._errors import (
    AvailabilityError,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from availability_client._models import Availability, Day, Freshness, Invalidated, Slot, Source

__all__ = [
    "AgentClient",
    "AsyncAgentClient",
    "AsyncBookingClient",
    "Availability",
    "AvailabilityError",
    "BookingClient",
    "Day",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Freshness",
    "InvalidArgument",
    "Invalidated",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Slot",
    "Source",
    "TlsConfig",
    "Unauthenticated",
    "Unavailable",
]
