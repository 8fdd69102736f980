"""One exception tree for every way a call can fail; a caller never sees a ``grpc.RpcError``.

Each gRPC status the service documents has its own class, so an integrator
writes ``except Unavailable:`` instead of comparing status codes. A status the
service does not document (``INTERNAL``, ``UNKNOWN``, ...) is raised as
:class:`AvailabilityError` itself, with its ``code``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AvailabilityError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Unauthenticated",
    "Unavailable",
    "error_from_status",
]

# Where gRPC carries the google.rpc.Status with the error details (grpc_status reads the same).
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One wrong field of a request, as the server's ``google.rpc.BadRequest`` lists it."""

    field: str
    """The proto field name, e.g. ``"time_zone"``."""
    description: str


class AvailabilityError(Exception):
    """The root of every error the clients raise for a failed call."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    """The gRPC status this class stands for."""

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.status
        """The gRPC status the server (or the channel) answered with."""


class InvalidArgument(AvailabilityError):
    """INVALID_ARGUMENT: the request was wrong; ``field`` says which part.

    ``field`` is None only when the server named no field (e.g. Cal.com itself
    rejected a parameter).
    """

    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message, code=code)
        self.violations = tuple(violations)
        self.field = self.violations[0].field if self.violations else None


class NotFound(AvailabilityError):
    """NOT_FOUND: Cal.com does not know the event type."""

    status = grpc.StatusCode.NOT_FOUND


class Unavailable(AvailabilityError):
    """UNAVAILABLE: the service cannot be reached, or Cal.com is down and nothing usable
    is cached. Already retried within the call's deadline."""

    status = grpc.StatusCode.UNAVAILABLE


class RateLimited(AvailabilityError):
    """RESOURCE_EXHAUSTED: the shared Cal.com budget is spent (and nothing usable is
    cached), or the server is at its limit of concurrent calls. Not retried: retrying
    at once would only spend more."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(AvailabilityError):
    """UNAUTHENTICATED: no token, or one the server does not know."""

    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AvailabilityError):
    """PERMISSION_DENIED: the token's role may not call this (a reader invalidating)."""

    status = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(AvailabilityError):
    """DEADLINE_EXCEEDED: no answer within the call's deadline (retries included)."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(AvailabilityError):
    """FAILED_PRECONDITION: the server is misconfigured (Cal.com rejected its API key)."""

    status = grpc.StatusCode.FAILED_PRECONDITION


_BY_CODE: dict[grpc.StatusCode, type[AvailabilityError]] = {
    kind.status: kind
    for kind in (
        InvalidArgument,
        NotFound,
        Unavailable,
        RateLimited,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
        FailedPrecondition,
    )
}


def error_from_status(
    code: grpc.StatusCode | None,
    details: str | None,
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None,
) -> AvailabilityError:
    """The exception for a failed call's status (sync and aio errors both carry these)."""
    code = code or grpc.StatusCode.UNKNOWN
    message = details or code.name
    kind = _BY_CODE.get(code, AvailabilityError)
    if kind is InvalidArgument:
        return InvalidArgument(message, violations=_violations(trailing_metadata or ()))
    return kind(message, code=code)


def _violations(trailing_metadata: Iterable[tuple[str, str | bytes]]) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for key, value in trailing_metadata:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            continue  # unreadable details must not hide the status itself
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    return violations
