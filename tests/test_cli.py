"""The installed console script, driven as a user would: a real process, the real grpcurl.

And the generated ``serve`` command itself: every field of ``Settings`` is a flag with its
help, default and env var, without an edit in ``availability.cli``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import grpc
import pytest
import typer
from pydantic import Field, SecretStr
from typer.testing import CliRunner

from availability.cli import settings_command
from availability.config import Settings
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.test_server import request

ROOT = Path(__file__).resolve().parents[1]

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


def test_a_second_server_on_a_busy_grpc_port_exits_with_one_line(server: Server) -> None:
    second = subprocess.run(
        [AVAILABILITY, "serve", "--grpc-addr", server.target, "--http-addr", "127.0.0.1:0"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"cannot serve gRPC on {server.target}" in lines[0]
    assert "in use" in lines[0]
    # The first server still has the port to itself.
    listed = server.grpcurl(server.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert SERVICE in listed.stdout.split()


def _serve_help() -> str:
    done = subprocess.run(
        [AVAILABILITY, "serve", "--help"],
        # A secret in the environment must not leak into the help either.
        env=_env(AVAILABILITY_WEBHOOK_SECRET="s3cret-in-env", AVAILABILITY_TTL_NEAR="41"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def option_help(help_text: str) -> dict[str, str]:
    """Each option's help as one line, keyed by its flag (``--ttl-near``)."""
    options: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            options[flag] = line.strip()
        elif flag is not None and line.startswith("   "):
            options[flag] += " " + line.strip()
        else:
            flag = None
    return options


def test_serve_help_lists_every_setting_with_its_default_and_env_var() -> None:
    help_text = _serve_help()
    options = option_help(help_text)
    assert "s3cret-in-env" not in help_text
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in options, f"no {flag} in serve --help"
        text = options[flag]
        assert f"env var: AVAILABILITY_{name.upper()}" in text
        description = " ".join((field.description or "").replace("``", "").split())
        assert description, f"Settings.{name} has no docstring"
        assert description in text
        if "SecretStr" in str(field.annotation):
            assert "default" not in text
            assert "prefer the env var" in text
            continue
        default = field.default
        if isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = "unset" if default is None else str(default)
        # The default, not the value the environment happens to set.
        assert f"default: {shown}]" in text, text
    assert "default: 60.0]" in options["--ttl-near"]


def test_a_flag_overrides_its_env_var() -> None:
    # Errors come in field order: grpc_addr's env value would be reported first, had it won.
    done = subprocess.run(
        [AVAILABILITY, "serve", "--grpc-addr", "127.0.0.1:0", "--ttl-near", "0"],
        env=_env(AVAILABILITY_GRPC_ADDR="nonsense", AVAILABILITY_TTL_NEAR="60"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("availability: invalid ttl_near:"), done.stderr
    # A switch overrides its env var both ways.
    done = subprocess.run(
        [AVAILABILITY, "serve", "--no-insecure", "--grpc-addr", "0.0.0.0:0"],
        env=_env(AVAILABILITY_INSECURE="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "grpc_addr 0.0.0.0:0 is reachable" in done.stderr


def test_version_is_the_one_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    done = subprocess.run(
        [AVAILABILITY, "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == f"availability {project['version']}"


class Extended(Settings):
    """What another branch might add: the command must follow with no edit of its own."""

    retry_attempts: Annotated[int, Field(ge=0)] = 3
    """Attempts per Cal.com call."""
    breaker_open: bool = True
    """Whether the breaker may open."""
    extra_hosts: list[int] = Field(default_factory=list)
    """Hosts every booking also invalidates."""
    metrics_token: SecretStr | None = None
    """Bearer token of the metrics endpoint."""


def _run_extended(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[int, str, list[Extended]]:
    seen: list[Extended] = []

    def action(settings: Extended) -> int:
        seen.append(settings)
        return 0

    app = typer.Typer(rich_markup_mode=None)
    app.callback()(lambda: None)
    app.command("serve")(settings_command(Extended, action))
    result = CliRunner().invoke(app, ["serve", *args], env=env)
    return result.exit_code, result.output, seen


def test_a_new_setting_gets_its_flag_env_var_and_help_with_no_other_edit() -> None:
    code, output, _ = _run_extended(["--help"])
    assert code == 0
    options = option_help(output)
    assert set(options) >= {"--grpc-addr", "--retry-attempts", "--breaker-open", "--extra-hosts"}
    assert options["--retry-attempts"].startswith("--retry-attempts INTEGER")
    assert "[env var: AVAILABILITY_RETRY_ATTEMPTS; default: 3]" in options["--retry-attempts"]
    assert options["--breaker-open"].startswith("--breaker-open / --no-breaker-open")
    assert "default: on]" in options["--breaker-open"]
    assert options["--extra-hosts"].startswith("--extra-hosts JSON")
    assert "default" not in options["--metrics-token"]

    code, _, seen = _run_extended(
        ["--retry-attempts", "5", "--no-breaker-open", "--extra-hosts", "[7, 8]"],
        env={"AVAILABILITY_RETRY_ATTEMPTS": "4", "AVAILABILITY_METRICS_TOKEN": "m3trics"},
    )
    assert code == 0
    [settings] = seen
    assert (settings.retry_attempts, settings.breaker_open, settings.extra_hosts) == (
        5,
        False,
        [7, 8],
    )
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "m3trics"

    code, _, seen = _run_extended([], env={"AVAILABILITY_RETRY_ATTEMPTS": "4"})
    assert (code, seen[0].retry_attempts, seen[0].breaker_open) == (0, 4, True)


@pytest.mark.parametrize(
    ("args", "field"),
    [(["--retry-attempts", "-1"], "retry_attempts"), (["--extra-hosts", "[7,"], "extra_hosts")],
)
def test_a_bad_new_setting_fails_in_one_line_naming_it(args: list[str], field: str) -> None:
    code, output, seen = _run_extended(args)
    assert (code, seen) == (2, [])
    assert output.strip().splitlines() == [output.strip()]
    assert output.startswith(f"availability: invalid {field}:")


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
