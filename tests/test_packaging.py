"""The wheel that ``pip install .`` builds carries what a user of the package needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_py_typed_and_the_proto_files(tmp_path: Path) -> None:
    # --no-build-isolation: the backend comes from the dev install, nothing is fetched.
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "availability/py.typed" in names
        protos = sorted((ROOT / "protos").rglob("*.proto"))
        assert protos
        for proto in protos:
            # At its import path, beside the code generated from it.
            inside = proto.relative_to(ROOT / "protos").as_posix()
            assert inside in names
            assert archive.read(inside) == proto.read_bytes()
        assert "availability/v1/availability_pb2.py" in names
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "availability = availability.cli:main" in archive.read(entry_points).decode()
    assert not [n for n in names if n.startswith(("tests/", "bench/")) or "__pycache__" in n]
