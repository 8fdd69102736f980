"""Text a caller supplied, made safe to write into a log line or an error message.

A caller controls ``InvalidateSlots.reason``, a time zone name, a webhook's
trigger and booking uid. Written as is, a newline in one of them forges a log
line of the caller's choosing and a megabyte of it floods the log. Quoted here,
it is one bounded line whose every control character is escaped, and where it
starts and ends is plain.
"""

from __future__ import annotations

__all__ = ["quote_caller_text"]


def quote_caller_text(text: str, *, limit: int = 200) -> str:
    """``text`` as a quoted Python string literal of at most its first ``limit`` characters.

    ``repr`` escapes what could break a line or fool a reader: newlines, carriage
    returns, other control and non-printable characters (U+2028 included) and the
    backslash itself, so an escape in the output never stands for a literal one.
    A longer text is cut and says how long it was.
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
