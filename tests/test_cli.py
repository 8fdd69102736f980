"""The installed console script, driven as a user would: a real process, the real grpcurl."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.test_server import request

BIN = Path(sys.executable).parent
AVAILABILITY = str(BIN / "availability")
GRPCURL = str(BIN / "grpcurl")
SERVICE = "availability.v1.AvailabilityService"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVAILABILITY_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (["--ttl-near", "0"], {}, "ttl_near"),
        (["--grpc-addr", "nonsense"], {}, "grpc_addr"),
        (["--calcom-url", "ftp://x"], {}, "calcom_url"),
        ([], {"AVAILABILITY_CACHE_URL": "memcached://x"}, "cache_url"),
        ([], {"AVAILABILITY_MAX_RANGE_DAYS": "zero"}, "max_range_days"),
        # An open server (no tokens) may listen on loopback only; tokens must be well formed.
        (["--grpc-addr", "0.0.0.0:0"], {}, "grpc_addr 0.0.0.0:0 is reachable"),
        (["--http-addr", "0.0.0.0:0"], {}, "http_addr 0.0.0.0:0 is reachable"),
        ([], {"AVAILABILITY_API_TOKENS": "s3cret:root"}, "api_tokens"),
        (["--api-tokens-file", "/nonexistent/tokens"], {}, "api_tokens_file"),
    ],
)
def test_bad_configuration_prints_one_line_and_exits_2(
    args: list[str], env: dict[str, str], field: str
) -> None:
    done = subprocess.run(
        [AVAILABILITY, "serve", *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert field in lines[0]
    assert "s3cret" not in lines[0]  # a rejected secret is never echoed


class Server:
    def __init__(self, process: subprocess.Popen[str], target: str, first_line: str) -> None:
        self.process = process
        self.target = target
        self.first_line = first_line

    def grpcurl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GRPCURL, "-plaintext", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def server() -> Iterator[Server]:
    process = subprocess.Popen(
        [AVAILABILITY, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        env=_env(AVAILABILITY_SANDBOX_LATENCY_MIN="0", AVAILABILITY_SANDBOX_LATENCY_MAX="0"),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    target = None
    while target is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"serving \S+ on (\S+)", line)
        if found:
            target = found.group(1)
    if target is None:
        process.kill()
        pytest.fail("server did not start:\n" + "".join(lines))
    try:
        yield Server(process, target, lines[0])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stderr.close()


def test_embedded_defaults_serve_the_sandbox_to_grpcurl(server: Server) -> None:
    assert "sandbox" in server.first_line

    listed = server.grpcurl(server.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert SERVICE in listed.stdout.split()
    assert "grpc.health.v1.Health" in listed.stdout.split()

    described = server.grpcurl(server.target, "describe", SERVICE)
    assert "rpc GetSlots" in described.stdout
    message = server.grpcurl(server.target, "describe", "availability.v1.GetSlotsRequest")
    assert "time_zone" in message.stdout

    start = datetime.now(UTC).replace(microsecond=0)
    body = {
        "eventTypeId": 1001,
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(days=14)).isoformat().replace("+00:00", "Z"),
        "timeZone": "Europe/Berlin",
    }
    called = server.grpcurl("-d", json.dumps(body), server.target, f"{SERVICE}/GetSlots")
    assert called.returncode == 0, called.stderr
    answer = json.loads(called.stdout)
    assert answer["days"]  # two weeks always include alice's working days
    assert answer["freshness"]["source"] == "SOURCE_UPSTREAM"
    again = json.loads(
        server.grpcurl("-d", json.dumps(body), server.target, f"{SERVICE}/GetSlots").stdout
    )
    assert again["days"] == answer["days"]
    assert again["freshness"]["source"] == "SOURCE_CACHE"

    invalidate = {"eventTypeId": 1001, "start": body["start"], "end": body["end"]}
    done = server.grpcurl("-d", json.dumps(invalidate), server.target, f"{SERVICE}/InvalidateSlots")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["event_type_ids"] == ["1001"]  # grpcurl prints proto field names

    bad = server.grpcurl(
        "-d", json.dumps({**body, "timeZone": "Mars/Base"}), server.target, f"{SERVICE}/GetSlots"
    )
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stderr
    assert "time_zone" in bad.stderr

    health = server.grpcurl(server.target, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"


def test_sigterm_exits_zero(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


def test_json_logs_are_one_object_per_line_and_one_line_per_rpc() -> None:
    process = subprocess.Popen(
        [
            AVAILABILITY,
            "serve",
            "--log-format",
            "json",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
        env=_env(AVAILABILITY_SANDBOX_LATENCY_MIN="0", AVAILABILITY_SANDBOX_LATENCY_MAX="0"),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        target = None
        lines: list[str] = []
        while target is None:
            line = process.stderr.readline()
            assert line, "server exited:\n" + "".join(lines)
            lines.append(line)
            found = re.search(r"serving \S+ on (\S+)", json.loads(line)["message"])
            target = found.group(1) if found else None
        reason = 'booking_created\n{"level": "ERROR"} forged line'
        codes = _json_log_workload(target, reason)
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    lines += rest.splitlines(keepends=True)
    records = [json.loads(line) for line in lines]  # every line, start-up included
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("sandbox" in r["message"] for r in records[:3])

    rpcs = [r for r in records if r["logger"] == "availability.rpc"]
    assert [(r["method"], r["status"]) for r in rpcs] == codes
    get, bad, invalidate = rpcs
    assert get["event_type_id"] == 1001
    assert get["source"] == "upstream"
    assert get["days"] == 7
    assert get["request_id"] == "call-42"
    assert get["peer"].startswith("ipv4:127.0.0.1:")
    assert isinstance(get["duration_ms"], float)
    assert isinstance(get["age"], float)
    assert bad["status"] == "InvalidArgument"
    assert "time_zone" in bad["error"]
    assert bad["request_id"]  # made up when the caller sends none
    assert invalidate["reason"] == reason  # intact, inside its own line
    assert not any(r["level"] == "ERROR" for r in records)
    assert "stopped" in records[-1]["message"]


def _json_log_workload(target: str, reason: str) -> list[tuple[str, str]]:
    """Three RPCs with a blocking client; the (method, status) each one's log line must show."""
    start = datetime.now(UTC).replace(microsecond=0)
    week = (start, start + timedelta(days=7))
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.AvailabilityServiceStub(channel)
        stub.GetSlots(request(1001, *week), metadata=(("x-request-id", "call-42"),))
        with pytest.raises(grpc.RpcError):
            stub.GetSlots(request(1001, *week, time_zone="Mars/Base"))
        stub.InvalidateSlots(pb.InvalidateSlotsRequest(event_type_id=1001, reason=reason))
    return [("GetSlots", "OK"), ("GetSlots", "InvalidArgument"), ("InvalidateSlots", "OK")]
