"""Bearer tokens with roles, enforced by the real server, driven by the real grpcurl."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from pydantic import SecretStr, ValidationError

from availability.config import Settings
from availability.server import RunningService
from availability.transport.grpc.tokens import SERVICE_NAME, Role, load_api_tokens
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_cli import GRPCURL, SERVICE
from tests.test_server import request

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub

READER = "r3ader-t0ken-for-the-agent"
WRITER = "wr1ter-t0ken-for-the-booking-service"
DAY = (NOW + timedelta(days=1), NOW + timedelta(days=2))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": SecretStr(f"{READER}:reader,{WRITER}:writer")})


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def grpcurl(service: RunningService, *args: str) -> subprocess.CompletedProcess[str]:
    # Not subprocess.run: the server under test shares this event loop.
    process = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


def body(method: str) -> str:
    start, end = (t.isoformat().replace("+00:00", "Z") for t in DAY)
    if method == "GetSlots":
        return json.dumps({"eventTypeId": 1001, "start": start, "end": end})
    return json.dumps({"eventTypeId": 1001, "start": start, "end": end, "reason": "test"})


async def call(service: RunningService, method: str, token: str | None = None) -> str:
    """Call ``method`` with grpcurl; the status code's name ("OK" on success)."""
    header = [] if token is None else ["-H", f"authorization: Bearer {token}"]
    done = await grpcurl(
        service, *header, "-d", body(method), service.target, f"{SERVICE}/{method}"
    )
    if done.returncode == 0:
        return "OK"
    for line in done.stderr.splitlines():
        if line.strip().startswith("Code:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(done.stderr)


async def test_grpcurl_roles(service: RunningService) -> None:
    assert await call(service, "GetSlots") == "Unauthenticated"
    assert await call(service, "InvalidateSlots") == "Unauthenticated"
    assert await call(service, "GetSlots", "not-a-token") == "Unauthenticated"
    assert await call(service, "GetSlots", READER) == "OK"
    assert await call(service, "InvalidateSlots", READER) == "PermissionDenied"
    assert await call(service, "GetSlots", WRITER) == "OK"
    assert await call(service, "InvalidateSlots", WRITER) == "OK"


async def test_grpcurl_health_and_reflection_need_no_token(service: RunningService) -> None:
    health = await grpcurl(service, service.target, "grpc.health.v1.Health/Check")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["status"] == "SERVING"
    listed = await grpcurl(service, service.target, "list")
    assert SERVICE in listed.stdout.split()


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", READER),),  # no scheme
        (("authorization", f"Basic {READER}"),),
        (("authorization", f"Bearer {READER}x"),),
        (("authorization", f"Bearer {READER[:-1]}"),),
        (("authorization", "Bearer "),),
        (("x-api-key", READER),),
    ],
)
async def test_anything_but_a_known_bearer_token_is_unauthenticated(
    stub: Stub, metadata: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSlots(request(1001, *DAY), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert READER not in (caught.value.details() or "")


async def test_scheme_is_case_insensitive(stub: Stub) -> None:
    await stub.GetSlots(request(1001, *DAY), metadata=(("authorization", f"bearer {READER}"),))


async def test_reader_may_not_invalidate(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.InvalidateSlots(
            pb.InvalidateSlotsRequest(everything=True), metadata=bearer(READER)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    done = await stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(everything=True), metadata=bearer(WRITER)
    )
    assert done.everything


async def test_unauthenticated_bytes_are_never_parsed(channel: grpc.aio.Channel) -> None:
    raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/{SERVICE}/GetSlots"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\xff\xff\xff not protobuf")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\xff\xff\xff not protobuf", metadata=bearer(READER))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_methods_are_closed(channel: grpc.aio.Channel) -> None:
    raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/{SERVICE}/DropEverything"
    )
    for metadata, code in [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (bearer(READER), grpc.StatusCode.PERMISSION_DENIED),
        (bearer(WRITER), grpc.StatusCode.UNIMPLEMENTED),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(b"", metadata=metadata)
        assert caught.value.code() == code


async def test_tokens_never_reach_the_log(
    stub: Stub, service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    await stub.GetSlots(request(1001, *DAY), metadata=bearer(READER))
    await stub.InvalidateSlots(pb.InvalidateSlotsRequest(everything=True), metadata=bearer(WRITER))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.InvalidateSlots(
            pb.InvalidateSlotsRequest(everything=True), metadata=bearer(READER)
        )
    assert READER not in caplog.text
    assert WRITER not in caplog.text


def test_token_file_with_comments_adds_to_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# the booking service\n"
        f"  {WRITER} : writer  \n"
        "\n"
        "# the agent; tokens may contain ':' and '#'\n"
        "agent:key#1:reader\n"
    )
    tokens = load_api_tokens("extra:reader", path)
    assert len(tokens) == 3
    assert tokens.role(WRITER) is Role.WRITER
    assert tokens.role("agent:key#1") is Role.READER
    assert tokens.role("extra") is Role.READER
    assert tokens.role("agent") is None


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ("s3cret-token:admin", "unknown role"),
        ("s3cret-token", "expected token:role"),
        (":writer", "expected token:role"),
        ("s3cret-token:reader,s3cret-token:writer", "another role"),
        ("s3cret token:reader", "printable ASCII"),
    ],
)
def test_bad_token_entries_are_named_but_never_echoed(entries: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        load_api_tokens(entries, None)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValidationError) as invalid:
        Settings(api_tokens=SecretStr(entries))
    assert "s3cret" not in str(invalid.value)


@pytest.mark.parametrize("addr", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "api:50051"])
def test_no_tokens_means_loopback_only(addr: str) -> None:
    for field in ("grpc_addr", "http_addr"):
        exposed: dict[str, Any] = {field: addr}
        with pytest.raises(ValidationError, match=field):
            Settings(**exposed)
        Settings(**exposed, insecure=True)
        Settings(**exposed, api_tokens=SecretStr(f"{WRITER}:writer"))
    for loopback in ("127.0.0.1:0", "127.8.9.10:0", "[::1]:0", "localhost:0"):
        Settings(grpc_addr=loopback, http_addr=loopback)


def test_a_good_header_is_remembered_and_a_wrong_one_never_is() -> None:
    tokens = load_api_tokens("r-secret:reader,w-secret:writer", None)
    get_slots, invalidate = f"/{SERVICE_NAME}/GetSlots", f"/{SERVICE_NAME}/InvalidateSlots"
    good = (("authorization", "Bearer r-secret"),)
    assert tokens.refusal(good, get_slots) is None
    assert tokens.refusal(good, get_slots) is None  # the second time from the table
    assert tokens._accepted == {"Bearer r-secret": Role.READER}
    # The remembered role still decides per method.
    refused = tokens.refusal(good, invalidate)
    assert refused is not None
    assert refused[0] == grpc.StatusCode.PERMISSION_DENIED
    for guess in ("Bearer r-secreT", "Bearer nope", "Basic r-secret", "r-secret"):
        wrong = tokens.refusal((("authorization", guess),), get_slots)
        assert wrong is not None
        assert wrong[0] == grpc.StatusCode.UNAUTHENTICATED
    assert set(tokens._accepted) == {"Bearer r-secret"}
    # Where the method's role is known beforehand (GetSlots' handler is chosen so).
    assert tokens.admits(good, Role.READER)
    assert not tokens.admits(good, Role.WRITER)
    assert not tokens.admits((("authorization", "Bearer r-secreT"),), Role.READER)
    assert not tokens.admits((), Role.READER)
    assert set(tokens._accepted) == {"Bearer r-secret"}
    # Bounded by what is configured, however many spellings of good tokens arrive.
    for i in range(20):
        spelling = "bearer " + "r-secret" + " " * i
        assert tokens.refusal((("authorization", spelling),), get_slots) is None
    assert len(tokens._accepted) <= 4 * 2
