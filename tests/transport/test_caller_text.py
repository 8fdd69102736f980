"""Caller-supplied text in logs: one bounded line, every control character escaped."""

from __future__ import annotations

import ast

import pytest

from availability.transport.caller_text import quote_caller_text


@pytest.mark.parametrize(
    "text",
    [
        "booking_created",
        "x\nFAKE LINE",
        "x\r\n2026-01-01 00:00:00 INFO availability: forged",
        "line\u2028separator\u0085next",
        "ansi \x1b[31mred\x1b[0m",
        "a literal \\n is not a newline",
        "quotes ' and \"",
        "",
    ],
)
def test_quoted_text_is_one_line_that_reads_back_as_the_text(text: str) -> None:
    quoted = quote_caller_text(text)
    assert quoted.isprintable()  # no newline, separator, escape or other control character
    assert len(quoted.splitlines()) <= 1
    assert ast.literal_eval(quoted) == text  # nothing lost, nothing ambiguous


def test_long_text_is_cut_and_says_how_long_it_was() -> None:
    quoted = quote_caller_text("\n" * 10_000, limit=64)
    assert quoted.isprintable()
    assert quoted == repr("\n" * 64) + "... (10000 characters)"
    assert len(quote_caller_text("y" * 10_000, limit=64)) < 100
