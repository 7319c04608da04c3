"""Opening the ledger for a command that reads or edits it (not `db upgrade`, which makes it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Engine


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///FILE` URL; None for in-memory SQLite and other databases."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            name = url[len(prefix) :].split("?", 1)[0]
            return None if name in ("", ":memory:") else Path(name)
    return None


def require_existing(url: str) -> None:
    """A missing SQLite file is an error, not a new empty database left behind (SQLite
    creates the file on first connect)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise LedgerError(
            f"no ledger at {path}: pass --db with the ledger's URL, or create one with "
            f"`sidecar db upgrade --db {url}`"
        )


@contextlib.contextmanager
def open_ledger(url: str) -> Iterator[Engine]:
    """A migrated ledger, or one line saying why not."""
    from sidecar.ledger import db as ledger_db

    require_existing(url)
    engine = ledger_db.make_engine(url)
    try:
        ledger_db.require_migrated(engine, url)
        yield engine
    finally:
        engine.dispose()
