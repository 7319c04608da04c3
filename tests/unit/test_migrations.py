"""Migrations match the models, have one head, and go up and down (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from sidecar.ledger import db


def test_single_head() -> None:
    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == db.HEAD, "set sidecar.ledger.db.HEAD to the new head"


def urls(tmp_path: Path, postgres_url: str) -> list[str]:
    return [f"sqlite:///{tmp_path / 'm.db'}", postgres_url]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_check_downgrade(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db.upgrade(url)
    engine = db.make_engine(url)
    assert {"streams", "sessions", "prices", "alerts"} <= set(inspect(engine).get_table_names())
    db.require_migrated(engine, url)
    command.check(db.alembic_config(url))  # models and migrations agree
    db.downgrade(url, "base")
    assert "streams" not in inspect(engine).get_table_names()
    engine.dispose()
