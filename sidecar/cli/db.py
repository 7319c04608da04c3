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


@command.command("rollup")
@db_option
@option(
    "--rebuild",
    default=None,
    help="First recompute every hour from this start (a duration like 7d or an ISO date; "
    "'all' for every hour): after writing streams rows by other means than the sidecar.",
)
def rollup(db: str, rebuild: str | None) -> None:
    """Bring the report's hourly rollups up to date now.

    `sidecar serve` does this every minute by itself; run it after a bulk load, or from cron
    where no sidecar runs. Reports stay exact either way: hours not rolled up yet are read
    row by row, which is only slower.

    \b
    Example:
      sidecar db rollup --db postgresql+psycopg://sidecar@db:5432/ledger
      sidecar db rollup --db sqlite:///sidecar.db --rebuild 30d
    """
    from datetime import UTC, datetime

    from sidecar.cli.ledger import open_ledger
    from sidecar.ledger.query import parse_time
    from sidecar.ledger.rollup import refresh

    now = datetime.now(UTC)
    since = None
    if rebuild is not None and rebuild != "all":
        since = parse_time(rebuild, "--rebuild", now)
    span = None if rebuild is None else (since, None)
    with open_ledger(db) as engine:
        done = refresh(engine, now, rebuild_since=span)
    until = "nothing yet" if done.rolled_until is None else f"{done.rolled_until:%Y-%m-%d %H:%M}"
    click.echo(f"rolled up {done.hours} hours ({done.rows} rows); rolled up until {until} UTC")


@command.command("prune")
@db_option
@option(
    "--before",
    required=True,
    help="Delete finished streams that started before this whole hour: an ISO date (UTC) "
    "or a duration before now rounded to the hour (90d).",
)
@option(
    "--dry-run/--no-dry-run",
    default=False,
    show_default=True,
    help="Count what would be deleted; delete nothing.",
)
def prune(db: str, before: str, dry_run: bool) -> None:
    """Delete old stream rows; their bill stays in the hourly rollups.

    Reports over the pruned months stay the same by model, tenant, outcome, ingress, instance,
    day and hour; --by session, --latency and --reprice there have no rows left to read.
    Archive the rows first if you need them (docs/fleet.md).

    \b
    Example:
      sidecar db prune --db postgresql+psycopg://sidecar@db:5432/ledger --before 2026-06-01
    """
    from datetime import UTC, datetime

    from sidecar.cli.ledger import open_ledger
    from sidecar.ledger.query import parse_time
    from sidecar.ledger.retention import prune as prune_ledger
    from sidecar.ledger.rollplan import floor_hour

    now = datetime.now(UTC)
    cut = parse_time(before, "--before", now)
    if before.strip()[-1:] in ("s", "m", "h", "d", "w"):  # a duration: round down to an hour
        cut = floor_hour(cut)
    with open_ledger(db) as engine:
        done = prune_ledger(engine, cut, now, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {done.streams} finished streams started, and {done.sessions} sessions ended, "
        f"before {cut:%Y-%m-%d %H:%M} UTC"
    )
