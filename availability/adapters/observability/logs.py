"""Structured logs: one JSON object per line, or text with ``key=value`` fields.

Code that logs puts machine-readable values in ``extra=log_fields(...)``; the
message stays a short human sentence. :class:`JsonFormatter` writes every
record, start-up lines and tracebacks included, as one JSON object on one
line, fields as keys. :class:`TextFormatter` writes the familiar
``time level logger: message`` followed by the fields as logfmt ``key=value``.

Caller-supplied strings (a ``reason``, a request id, a webhook's trigger) go
only into fields, after :func:`caller_text` has bounded their length. Both
formatters escape what they write: JSON by its rules (``ensure_ascii``, so not
even a U+2028 can split a line), text by quoting any value that is not a plain
token the way JSON does. Either way a newline in a caller's string stays
inside its line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

__all__ = [
    "NOISY_LIBRARIES",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "caller_text",
    "configure_logging",
    "log_fields",
]

LogFormat = Literal["text", "json"]

FIELDS: Final = "fields"
"""The LogRecord attribute holding a record's fields (set through ``extra``)."""

NOISY_LIBRARIES: Final = (
    "aiocache",
    "asyncio",
    "grpc",
    "hpack",
    "httpcore",
    "httpx",
    "matplotlib",
    "opentelemetry",
    "PIL",
    "redis",
    "urllib3",
    "uvicorn",
)
"""Libraries whose INFO/DEBUG lines (one per HTTP request, per frame, per font) would
drown ours: they log WARNING and above whatever our level is."""

_CALLER_TEXT_LIMIT: Final = 200
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")


def log_fields(**values: Any) -> dict[str, dict[str, Any]]:
    """``extra`` for a log call: ``logger.info("...", extra=log_fields(method=...))``."""
    return {FIELDS: values}


def caller_text(value: str, limit: int = _CALLER_TEXT_LIMIT) -> str:
    """A string a caller chose, cut to ``limit`` characters (the formatters escape it)."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}...(+{len(value) - limit} chars)"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, Mapping) else {}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the
    record's fields, and ``exception`` (the traceback as one string) if any."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            if key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=True, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``; values that are not plain tokens
    are JSON-quoted, and so is a message holding a line break."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        if "\n" in record.message or "\r" in record.message:
            record.message = json.dumps(record.message, ensure_ascii=True)
        line = super().formatMessage(record)
        fields = _fields(record)
        if not fields:
            return line
        return line + "".join(f" {key}={_logfmt(value)}" for key, value in fields.items())


def _logfmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=True)


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every record (ours, the libraries', warnings) to ``stream`` (stderr) in
    ``log_format``; libraries stay at WARNING (see :data:`NOISY_LIBRARIES`)."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    numeric = logging.getLevelName(level)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    logging.captureWarnings(True)
