"""`sidecar keys`: client API keys, each bound to a tenant (stored as SHA-256 digests)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sidecar.cli.options import option

if TYPE_CHECKING:
    from sidecar.security.apikeys import ApiKeyStore

db_option = option(
    "--db", default="sqlite:///sidecar.db", show_default=True, help="Ledger database URL."
)


def _store(db: str) -> ApiKeyStore:
    from sidecar.cli.ledger import require_existing
    from sidecar.ledger import db as ledger_db
    from sidecar.security.apikeys import ApiKeyStore

    require_existing(db)
    engine = ledger_db.make_engine(db)
    ledger_db.require_migrated(engine, db)
    return ApiKeyStore(engine)


@click.group("keys")
def command() -> None:
    """Create, list and revoke client API keys (for `sidecar serve --auth apikey`).

    \b
    Example:
      sidecar keys create --tenant acme --name "web app"
      sidecar keys list --format json
      sidecar keys revoke 3f9c2a1b7d4e6f80
    """


@command.command("create")
@db_option
@option("--tenant", required=True, help="The tenant every request with this key is billed to.")
@option("--name", default=None, help="A note for humans: who or what uses the key.")
@option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def create(db: str, tenant: str, name: str | None, fmt: str) -> None:
    """Create a key for TENANT and print it once: only its digest is stored.

    \b
    Example:
      sidecar keys create --tenant acme --db sqlite:///sidecar.db
    """
    store = _store(db)
    try:
        info, key = store.create(tenant, name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant") from None
    if fmt == "json":
        click.echo(json.dumps({"id": info.id, "tenant": info.tenant, "key": key}))
        return
    click.echo(key)
    click.echo(
        f"id {info.id}, tenant {info.tenant}: store the key now, it cannot be shown again",
        err=True,
    )


@command.command("list")
@db_option
@option("--all", "include_revoked", is_flag=True, default=False, help="Include revoked keys.")
@option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def list_keys(db: str, include_revoked: bool, fmt: str) -> None:
    """List keys (ids, tenants, dates; never the keys themselves).

    \b
    Example:
      sidecar keys list --all --format json
    """
    store = _store(db)
    rows = store.all(include_revoked)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "keys": [
                        {
                            "id": r.id,
                            "tenant": r.tenant,
                            "name": r.name,
                            "created_at": r.created_at.isoformat(),
                            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                        }
                        for r in rows
                    ]
                }
            )
        )
        return
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "live"
        click.echo(f"{r.id}  {r.tenant}  {r.created_at:%Y-%m-%d %H:%M}  {state}  {r.name or ''}")


@command.command("revoke")
@db_option
@click.argument("key_id")
def revoke(db: str, key_id: str) -> None:
    """Revoke the key KEY_ID; running sidecars refuse it, close the WebSocket
    connections it opened and end its HTTP answers in flight, within --key-refresh seconds.

    \b
    Example:
      sidecar keys revoke 3f9c2a1b7d4e6f80
    """
    store = _store(db)
    if not store.revoke(key_id):
        raise click.ClickException(f"no live key with id {key_id}")
    click.echo(f"revoked {key_id}")
