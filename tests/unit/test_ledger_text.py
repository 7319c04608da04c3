"""The one rule for client-chosen text (ledger/text.py) and whose fault a write error is."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StatementError,
)

from sidecar.ledger.failures import is_bad_row
from sidecar.ledger.models import Session, Stream
from sidecar.ledger.text import MARKER, bounded, string_limits


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("gpt-4o", 128, "gpt-4o"),
        ("", 5, ""),
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde" + MARKER),
        ("a\x00b", 128, "ab"),
        ("line\nbreak\ttab\r", 128, "linebreaktab"),
        ("\u202egnp.exe", 128, "gnp.exe"),  # a right-to-left override forges what people read
        ("\ud800lone", 128, "lone"),  # a lone surrogate cannot be encoded for PostgreSQL
        ("naïve 模型 ✓", 128, "naïve 模型 ✓"),  # printable non-ASCII stays
        ("\x00" * 10 + "x" * 10, 8, "x" * 7 + MARKER),  # cleaned first, then cut
        ("abc", 1, MARKER),
        ("abc", 0, ""),
    ],
)
def test_bounded(value: str, limit: int, expected: str) -> None:
    assert bounded(value, limit) == expected
    assert len(bounded(value, limit)) <= limit


def test_an_acceptable_value_is_returned_as_is() -> None:
    value = "m" * 128
    assert bounded(value, 128) is value


def test_the_limits_are_the_table_columns_lengths() -> None:
    limits = string_limits(Stream.__table__)  # type: ignore[arg-type]
    assert (
        limits["model"] == 128 and limits["finish_reason"] == 32 and "prompt_tokens" not in limits
    )
    assert string_limits(Session.__table__)["tenant"] == 128  # type: ignore[arg-type]


def _wrapped(kind: type[Exception], orig: Exception, invalidated: bool = False) -> Exception:
    return kind("INSERT ...", {}, orig, connection_invalidated=invalidated)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("exc", "bad_row"),
    [
        (_wrapped(DataError, Exception("value too long for type character varying(128)")), True),
        (_wrapped(IntegrityError, sqlite3.IntegrityError("NOT NULL constraint failed")), True),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), True),
        (StatementError("bind", "INSERT", {}, UnicodeEncodeError("utf-8", "", 0, 1, "x")), True),
        (_wrapped(OperationalError, Exception("connection refused")), False),
        (_wrapped(InterfaceError, Exception("connection already closed")), False),
        (_wrapped(OperationalError, sqlite3.OperationalError("database is locked")), False),
        (_wrapped(ProgrammingError, Exception('relation "streams" does not exist')), False),
        (_wrapped(DataError, Exception("server closed the connection"), invalidated=True), False),
        (StatementError("bind", "INSERT", {}, RuntimeError("?")), False),
        (RuntimeError("anything else"), False),
    ],
)
def test_outage_or_bad_row(exc: Exception, bad_row: bool) -> None:
    assert is_bad_row(exc) is bad_row
