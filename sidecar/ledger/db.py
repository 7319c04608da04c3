"""Database engines and migrations (Alembic driven from code, no alembic.ini needed)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from sidecar.errors import ConfigError, LedgerError

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_DB = "sqlite:///sidecar.db"
# The newest migration. Commands that only read the ledger compare it with the database's
# revision without importing Alembic and parsing every migration (a tenth of `report`'s
# start-up); tests/unit/test_migrations.py fails when a new migration does not update it.
HEAD: Final = "0005"


def migrations_dir() -> Path:
    """`sidecar/_migrations` inside a wheel, else the checkout's top-level `migrations/`."""
    packaged = Path(str(resources.files("sidecar"))) / "_migrations"
    if (packaged / "env.py").exists():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").exists():
        return checkout
    raise LedgerError("migrations not found: reinstall ai-stream-sidecar")


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        parsed = make_url(url)
        threshold = parsed.query.get("prepare_threshold")
        if threshold is None:
            return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
        return create_engine(
            parsed.difference_update_query(["prepare_threshold"]),
            pool_pre_ping=True,
            pool_size=4,
            max_overflow=4,
            connect_args={"prepare_threshold": _prepare_threshold(url, threshold)},
        )
    except (ArgumentError, NoSuchModuleError, ImportError):
        raise ConfigError(
            f"--db {redact(url)!r} is not a database URL: use sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST:PORT/DB"
        ) from None


def _prepare_threshold(url: str, value: str | tuple[str, ...]) -> int | None:
    """`?prepare_threshold=none` turns off psycopg's server-side prepared statements, which a
    PgBouncer before 1.21 in transaction mode cannot route (docs/fleet.md)."""
    text = value if isinstance(value, str) else value[-1]
    if text.lower() == "none":
        return None
    if text.isdigit():
        return int(text)
    raise ConfigError(
        f"--db {redact(url)!r}: prepare_threshold={text} is not a count; use a number or none"
    )


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets `sidecar report` read while `serve` writes; NORMAL sync is durable in WAL mode
    # against process crashes (the spool covers the rest).
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log or an error message."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    with _connected(url), _migrating(url) as config:
        command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    with _connected(url), _migrating(url) as config:
        command.downgrade(config, revision)


@contextlib.contextmanager
def _migrating(url: str) -> Iterator[Config]:
    """Alembic on a connection of `make_engine`, so URL options it reads (such as
    `prepare_threshold`) apply to migrations too."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            yield config
    finally:
        engine.dispose()


def head_revision() -> str:
    return HEAD


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        found = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        return next(iter(found), None)


def require_migrated(engine: Engine, url: str) -> None:
    """Refuse to run on a database that is not at the current schema."""
    with _connected(url):
        current = current_revision(engine)
    head = head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise LedgerError(
            f"database {redact(url)} is {state}, not at {head}: run `sidecar db upgrade --db "
            f"{redact(url)}` first"
        )


@contextlib.contextmanager
def _connected(url: str) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise LedgerError(f"cannot use database {redact(url)}: {reason}") from None
