"""The README's "From Python" examples run, as written, against a real server.

The fenced ``python`` blocks under that heading are joined into one script (the
booking example continues with the agent's ``slot``), their target replaced by
the test server's, and run in a fresh interpreter, so they cannot rot.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import pytest

from availability.core.clock import ManualClock
from availability.server import RunningService

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## From Python"
README_TARGET = '"127.0.0.1:50051"'


def python_blocks(markdown: str, heading: str) -> list[str]:
    """The fenced python blocks of the section under ``heading`` (up to the next one)."""
    section = markdown.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


@pytest.fixture
def clock() -> ManualClock:
    # The examples ask for "now" from the wall clock: the server's clock starts there too.
    return ManualClock(time.time())


async def test_the_python_examples_run(service: RunningService) -> None:
    blocks = python_blocks(README.read_text(), HEADING)
    assert len(blocks) == 2  # the agent's and the booking service's
    assert all(README_TARGET in block for block in blocks)
    script = "\n".join(blocks).replace(README_TARGET, repr(service.target))
    # A subprocess, not exec: the examples block, and the server shares this event loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("The next free slot is ")
    assert lines[1].startswith("Booked; the cache dropped 1 day(s) of (1001")


def test_the_section_is_found() -> None:
    """The control: the extraction sees the blocks of the section and no others."""
    markdown = (
        "# T\n## From Python\n```python\na = 1\n```\ntext\n```sh\nls\n```\n"
        "## Next\n```python\nb = 2\n```\n"
    )
    assert python_blocks(markdown, HEADING) == ["a = 1\n"]
