"""`sidecar db`: ledger schema management."""

from __future__ import annotations

import click

from sidecar.cli.options import option

db_option = option(
    "--db", default="sqlite:///sidecar.db", show_default=True, help="Ledger database URL."
)


@click.group("db")
def command() -> None:
    """Create and migrate the ledger database.

    \b
    Example:
      sidecar db upgrade --db postgresql+psycopg://sidecar@db:5432/ledger
    """


@command.command("upgrade")
@db_option
@option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(db: str, revision: str) -> None:
    """Migrate the ledger to the latest schema (creates it if empty).

    \b
    Example:
      sidecar db upgrade --db sqlite:///sidecar.db
    """
    from sidecar.ledger import db as ledger_db

    ledger_db.upgrade(db, revision)
    click.echo(f"ledger {ledger_db.redact(db)} is at revision {ledger_db.head_revision()}")


@command.command("downgrade")
@db_option
@click.argument("revision")
def downgrade(db: str, revision: str) -> None:
    """Migrate the ledger down to REVISION ('base' drops every table).

    \b
    Example:
      sidecar db downgrade --db sqlite:///sidecar.db base
    """
    from sidecar.ledger import db as ledger_db

    ledger_db.downgrade(db, revision)
    click.echo(f"ledger {ledger_db.redact(db)} downgraded to {revision}")


@command.command("current")
@db_option
def current(db: str) -> None:
    """Print the ledger's schema revision.

    \b
    Example:
      sidecar db current --db sqlite:///sidecar.db
    """
    from sidecar.cli.ledger import require_existing
    from sidecar.ledger import db as ledger_db

    require_existing(db)
    engine = ledger_db.make_engine(db)
    click.echo(ledger_db.current_revision(engine) or "empty")
