"""Every gRPC status becomes one exception of the tree, on both clients (grpcio-testing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from availability_client import (
    AgentClient,
    AvailabilityError,
    BookingClient,
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
from tests.clients.conftest import GET_SLOTS, INVALIDATE, Answer, PlayedServer

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)

MAPPED: dict[grpc.StatusCode, type[AvailabilityError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}
FAILURES = [code for code in grpc.StatusCode if code is not grpc.StatusCode.OK]

Call = Callable[[PlayedServer], tuple[Callable[[], object], object]]


def agent_call(played: PlayedServer) -> tuple[Callable[[], object], object]:
    agent = AgentClient.from_channel(played.client_channel)
    return (lambda: agent.get_slots(1001, START, END)), GET_SLOTS


def booking_call(played: PlayedServer) -> tuple[Callable[[], object], object]:
    booking = BookingClient.from_channel(played.client_channel)
    return (lambda: booking.booking_created(1001, START, END)), INVALIDATE


CLIENTS = pytest.mark.parametrize("client", [agent_call, booking_call], ids=["agent", "booking"])


@CLIENTS
@pytest.mark.parametrize("code", FAILURES, ids=[code.name for code in FAILURES])
def test_every_status_maps_to_the_tree(
    played: PlayedServer, client: Call, code: grpc.StatusCode
) -> None:
    call, method = client(played)
    error = played.failure(call, Answer(method, code=code, details=f"why: {code.name}"))
    kind = MAPPED.get(code, AvailabilityError)
    assert type(error) is kind
    assert error.code is code
    assert str(error) == error.message == f"why: {code.name}"
    assert not isinstance(error, grpc.RpcError)
    # Raised "from None": the traceback shows no grpc internals either.
    assert error.__suppress_context__
    assert error.__cause__ is None


def bad_request(*violations: tuple[str, str]) -> list[tuple[str, str | bytes]]:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in violations
            ]
        )
    )
    status = rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message="time_zone: unknown", details=[detail]
        )
    )
    return list(status.trailing_metadata)


@CLIENTS
def test_invalid_argument_carries_the_bad_request_details(
    played: PlayedServer, client: Call
) -> None:
    call, method = client(played)
    error = played.failure(
        call,
        Answer(
            method,
            code=grpc.StatusCode.INVALID_ARGUMENT,
            details="time_zone: unknown IANA time zone 'Mars/Olympus'",
            trailing_metadata=[
                ("x-other", "kept apart"),
                *bad_request(
                    ("time_zone", "unknown IANA time zone 'Mars/Olympus'"),
                    ("end", "must be after start"),
                ),
            ],
        ),
    )
    assert isinstance(error, InvalidArgument)
    assert error.field == "time_zone"
    assert error.violations == (
        FieldViolation("time_zone", "unknown IANA time zone 'Mars/Olympus'"),
        FieldViolation("end", "must be after start"),
    )
    assert error.message.startswith("time_zone:")


@pytest.mark.parametrize(
    "trailing",
    [
        [],  # Cal.com rejected a parameter: the server names no field
        [("grpc-status-details-bin", b"\xff\xfe not a status")],
        [("grpc-status-details-bin", status_pb2.Status(code=3).SerializeToString())],
    ],
    ids=["no-details", "garbage-details", "no-bad-request"],
)
def test_invalid_argument_without_usable_details_names_no_field(
    played: PlayedServer, trailing: list[tuple[str, str | bytes]]
) -> None:
    call, method = agent_call(played)
    error = played.failure(
        call,
        Answer(
            method,
            code=grpc.StatusCode.INVALID_ARGUMENT,
            details="Cal.com: bad duration",
            trailing_metadata=trailing,
        ),
    )
    assert isinstance(error, InvalidArgument)
    assert (error.field, error.violations) == (None, ())
    assert error.message == "Cal.com: bad duration"


def test_a_status_without_details_is_named_by_its_code(played: PlayedServer) -> None:
    call, method = agent_call(played)
    error = played.failure(call, Answer(method, code=grpc.StatusCode.UNAVAILABLE))
    assert isinstance(error, Unavailable)
    assert error.message == "UNAVAILABLE"
