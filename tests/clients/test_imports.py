"""The clients import grpcio, protobuf (with the google.rpc messages) and the generated code,
nothing of the server; and they import from any directory after the README's install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.core.test_imports import loaded_by

GENERATED = "availability.v1"


def test_the_clients_import_no_part_of_the_server() -> None:
    loaded = loaded_by("availability_client")
    ours = [m for m in loaded if m == "availability" or m.startswith("availability.")]
    assert f"{GENERATED}.availability_pb2" in ours  # the control: the probe sees them
    assert [m for m in ours if m != "availability" and not m.startswith(GENERATED)] == []


def test_the_clients_need_only_grpc_and_protobuf() -> None:
    # Whatever grpc itself loads (its own helpers, typing_extensions) is grpc's business.
    allowed = {m.split(".")[0] for m in loaded_by("grpc")}
    allowed |= {"google", "availability", "availability_client"}
    assert [m for m in loaded_by("availability_client") if m.split(".")[0] not in allowed] == []


def test_the_import_line_works_from_any_directory(tmp_path: Path) -> None:
    line = (
        "from availability_client import AgentClient, AsyncAgentClient, BookingClient, "
        "AsyncBookingClient, AvailabilityError, Source"
    )
    # -I: no current directory or PYTHONPATH on sys.path, only what the install put there.
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"{line}; import availability_client as c; print(c.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (Path(done.stdout.strip()).parent / "py.typed").is_file()
