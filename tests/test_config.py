"""Each setting is written once, in ``Settings``; what people read about it is derived."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from availability.config import Settings, setting_docs, settings_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "settings-table"


def test_every_setting_has_a_docstring() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_secrets_are_known_and_their_defaults_never_shown() -> None:
    docs = {doc.name: doc for doc in setting_docs()}
    assert {name for name, doc in docs.items() if doc.secret} >= {
        "calcom_api_key",
        "api_tokens",
        "webhook_secret",
    }
    assert all(doc.default is None for doc in docs.values() if doc.secret)
    assert docs["ttl_near"].default == "60.0"
    assert docs["insecure"].default == "off"
    assert docs["calcom_url"].default is None


def test_the_readme_holds_the_table_of_every_setting() -> None:
    table = settings_table()
    assert table in (ROOT / "README.md").read_text()
    for doc in setting_docs():
        assert f"| `{doc.env_var}` (`{doc.flag}`) |" in table


def _script(readme: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "README": str(readme), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_table_script_finds_a_stale_table_and_rewrites_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    fresh = (ROOT / "README.md").read_text()
    readme.write_text(fresh.replace("| `AVAILABILITY_TTL_NEAR` (`--ttl-near`) |", "| old row |"))

    stale = _script(readme, "--check")
    assert stale.returncode == 1
    assert "settings table is stale" in stale.stderr
    assert "| old row |" in readme.read_text()  # --check changes nothing

    assert _script(readme).returncode == 0
    assert readme.read_text() == fresh
    assert _script(readme, "--check").returncode == 0


def test_the_table_script_refuses_a_readme_without_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    done = _script(readme)
    assert done.returncode == 1
    assert "needs the lines" in done.stderr
    assert readme.read_text() == "# no table here\n"
