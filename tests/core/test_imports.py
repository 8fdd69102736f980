"""The core's import closure: the standard library and ``availability.core``, nothing else.

Run in a fresh interpreter, so that what other tests imported cannot hide a
dependency, and checked against ``sys.stdlib_module_names``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Prints the modules the import added that are not the standard library's: builtin or
# frozen ones, or files under the interpreter's stdlib folders outside site-packages.
_PROBE = textwrap.dedent(
    """
    import json, sys, sysconfig
    before = set(sys.modules)
    import {package}
    roots = tuple({{sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}})
    def stdlib(module):
        path = getattr(module, "__file__", None)
        return path is None or (path.startswith(roots) and "-packages" not in path)
    added = set(sys.modules) - before
    print(json.dumps(sorted(name for name in added if not stdlib(sys.modules[name]))))
    """
)


def loaded_by(package: str, *, prelude: str = "") -> list[str]:
    """Modules outside the standard library that importing ``package`` (after ``prelude``)
    newly loads."""
    code = prelude + _PROBE.format(package=package)
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def outsiders(modules: list[str], allowed_prefix: str) -> list[str]:
    return [
        name
        for name in modules
        if name not in ("availability", allowed_prefix.rstrip("."))
        and not name.startswith(allowed_prefix)
    ]


def test_the_core_imports_only_the_standard_library() -> None:
    assert outsiders(loaded_by("availability.core"), "availability.core") == []


def test_resilience_imports_only_the_core() -> None:
    assert outsiders(loaded_by("availability.resilience.budget"), "availability.") == []
    modules = loaded_by("availability.resilience.budget")
    assert [m for m in modules if m.startswith("availability.")] == sorted(
        m for m in modules if m.startswith(("availability.core", "availability.resilience"))
    )


@pytest.mark.parametrize("library", ["grpc", "httpx", "redis", "aiocache", "starlette"])
def test_the_check_catches_a_library_pulled_into_a_core(tmp_path: Path, library: str) -> None:
    """The control: a package shaped like the core that imports ``library`` is caught."""
    core = tmp_path / "leaky" / "core"
    core.mkdir(parents=True)
    (tmp_path / "leaky" / "__init__.py").write_text("")
    (core / "__init__.py").write_text("from leaky.core import cache\n")
    (core / "cache.py").write_text(f"import asyncio\nimport {library}\n")
    prelude = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
    caught = outsiders(loaded_by("leaky.core", prelude=prelude), "leaky")
    assert library in {name.split(".")[0] for name in caught}
