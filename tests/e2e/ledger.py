"""Read the ledger back in tests."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import create_engine, select

from sidecar.ledger.models import Session, Stream
from tests.support.timeouts import scaled


def stream_rows(db_url: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return [dict(r) for r in connection.execute(select(Stream)).mappings()]
    finally:
        engine.dispose()


def session_rows(db_url: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return [dict(r) for r in connection.execute(select(Session)).mappings()]
    finally:
        engine.dispose()


def wait_for_rows(db_url: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll until `count` streams have an outcome (rows are written off the relay path)."""
    deadline = time.monotonic() + scaled(timeout)
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in stream_rows(db_url) if r["outcome"] is not None]
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {count} finished streams in the ledger, found {rows}")
