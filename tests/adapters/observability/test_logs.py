"""The log formatters: one line per record whatever a caller put in it, fields kept apart."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from availability.adapters.observability.logs import (
    NOISY_LIBRARIES,
    JsonFormatter,
    TextFormatter,
    caller_text,
    configure_logging,
    log_fields,
)

HOSTILE = 'booking_created\nlevel=ERROR message="forged" \u2028 and \x1b[31mred'


def record(text: str = "InvalidateSlots OK", **fields: object) -> logging.LogRecord:
    return logging.getLogger("availability.rpc").makeRecord(
        "availability.rpc", logging.INFO, __file__, 1, text, (), None, extra=log_fields(**fields)
    )


def test_json_is_one_object_on_one_line_with_the_fields_as_keys() -> None:
    line = JsonFormatter().format(record(reason=HOSTILE, days=3, age=1.5, error=None))
    assert "\n" not in line
    assert "\u2028" not in line
    document = json.loads(line)
    assert document["reason"] == HOSTILE
    assert (document["days"], document["age"], document["error"]) == (3, 1.5, None)
    assert document["level"] == "INFO"
    assert document["logger"] == "availability.rpc"
    assert document["message"] == "InvalidateSlots OK"
    assert document["time"].endswith("Z")


def test_json_keeps_a_traceback_inside_its_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        made = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(made)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_a_field_cannot_overwrite_the_line_itself() -> None:
    document = json.loads(JsonFormatter().format(record(level="ERROR", message="forged")))
    assert (document["level"], document["message"]) == ("INFO", "InvalidateSlots OK")


def test_text_quotes_what_is_not_a_plain_token() -> None:
    line = TextFormatter().format(
        record(method="GetSlots", peer="ipv4:127.0.0.1:5000", reason=HOSTILE, error=None, ok=True)
    )
    assert not {"\n", "\u2028", "\x1b"} & set(line)
    assert line.endswith(
        " method=GetSlots peer=ipv4:127.0.0.1:5000 reason="
        + json.dumps(HOSTILE, ensure_ascii=True)
        + " error=- ok=true"
    )
    assert " INFO availability.rpc: InvalidateSlots OK " in line


def test_text_quotes_a_message_that_would_break_the_line() -> None:
    line = TextFormatter().format(record("two\nlines"))
    assert line.endswith(': "two\\nlines"')


def test_caller_text_is_bounded() -> None:
    assert caller_text("short") == "short"
    long = caller_text("x" * 1000, 200)
    assert long == "x" * 200 + "...(+800 chars)"


def test_libraries_stay_quiet_at_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    for name in NOISY_LIBRARIES:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    try:
        logging.getLogger("httpx").info("HTTP Request: GET ...")
        logging.getLogger("availability.adapters.calcom.client").debug("Cal.com GET /v2/slots")
    finally:
        logging.captureWarnings(False)  # configure_logging routes warnings: undo it
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["logger"] for line in lines] == ["availability.adapters.calcom.client"]
