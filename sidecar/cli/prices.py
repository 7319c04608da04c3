"""`sidecar prices`: the price history kept in the ledger (USD per million tokens)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sidecar.cli.options import option
from sidecar.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sidecar.accounting.pricing import Price

FIELDS = (
    "model",
    "effective_from",
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "source",
)

db_option = option(
    "--db", default="sqlite:///sidecar.db", show_default=True, help="Ledger database URL."
)


def _usd(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Decimal | None:
    """A non-negative, exact decimal amount ("0.60" stays 0.60, never a float)."""
    if value is None:
        return None
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise click.BadParameter(
            f"{value!r} is not a number of USD per million tokens, e.g. 0.60"
        ) from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter(f"{value!r} must be a non-negative number")
    return amount


@click.group("prices")
def command() -> None:
    """Prices per model with effective dates, kept in the ledger.

    A new price applies to streams that start on or after its date; costs already in the
    ledger never change (use `sidecar report --reprice FILE` to see what-if costs).

    \b
    Example:
      sidecar prices import prices.toml --db sqlite:///sidecar.db
      sidecar prices list --format json
    """


@command.command("import")
@db_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@option("--source", default=None, help="Where these prices come from (default: the file name).")
def import_(db: str, file: Path, source: str | None) -> None:
    """Add or replace the prices listed in a TOML FILE of [[price]] (and [[hourly]]) tables.

    Each [[price]] has model, input_per_mtok, output_per_mtok, effective_from (all required)
    and optionally cached_input_per_mtok (amounts as strings keep every digit). An [[hourly]]
    table gives a self-hosted server's cost per hour instead (docs/accounting.md). A price with
    the same model and effective_from as a stored one replaces it. The whole file is checked
    first: one mistake (a missing or unknown key, a wrong type) imports nothing.

    \b
    Example:
      sidecar prices import prices.toml
    \b
      # prices.toml
      [[price]]
      model = "llama-3.1-8b-instruct"
      input_per_mtok = "0.20"
      output_per_mtok = "0.60"
      effective_from = 2026-01-01
    """
    from sidecar.accounting.pricefile import parse_price_file
    from sidecar.ledger.prices import import_price_file

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a UTF-8 text file") from None
    prices = parse_price_file(text, str(file))
    with _ledger(db) as engine:
        count = import_price_file(engine, prices, source or file.name)
    click.echo(f"imported {count} price{'s' if count != 1 else ''} from {file}")


@command.command("list")
@db_option
@option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "toml"]),
    default="table",
    show_default=True,
    help="toml writes a file `sidecar prices import` reads back (per-token and hourly prices).",
)
@option("--hourly", is_flag=True, default=False, help="List the GPU-hour prices instead.")
def list_(db: str, fmt: str, hourly: bool) -> None:
    """Print every stored price, by model and effective date.

    \b
    Example:
      sidecar prices list
      sidecar prices list --hourly
      sidecar prices list --format toml > prices.toml
    """
    from sidecar.cli.pricelist import hourly_fields, render_hourly
    from sidecar.ledger.prices import list_hourly, list_prices

    with _ledger(db) as engine:
        stored = list_prices(engine)
        per_hour = [hourly_fields(price, source) for price, source in list_hourly(engine)]
    if hourly:
        click.echo(render_hourly(per_hour, fmt), nl=False)
        return
    text = render([_fields(s.price, s.source) for s in stored], fmt)
    if fmt == "toml":
        text += render_hourly(per_hour, fmt)
    elif fmt == "table" and per_hour:
        text += f"and {len(per_hour)} hourly prices: `sidecar prices list --hourly`\n"
    click.echo(text, nl=False)


@command.command("set")
@db_option
@click.argument("model")
@option("--input", "input_", callback=_usd, required=True, help="USD per million prompt tokens.")
@option("--output", callback=_usd, required=True, help="USD per million generated tokens.")
@option("--cached-input", callback=_usd, default=None, help="USD per million cached prompt tokens.")
@option(
    "--from",
    "from_",
    required=True,
    help="Effective from: an ISO date or datetime (UTC unless it has an offset).",
)
@option("--source", default="sidecar prices set", show_default=True, help="Where it comes from.")
def set_(
    db: str,
    model: str,
    input_: Decimal,
    output: Decimal,
    cached_input: Decimal | None,
    from_: str,
    source: str,
) -> None:
    """Add (or replace) one price of MODEL, in force from a date on.

    \b
    Example:
      sidecar prices set llama-3.1-8b-instruct --input 0.20 --output 0.60 --from 2026-02-01
    """
    from sidecar.accounting.pricing import Price, parse_instant
    from sidecar.ledger.prices import upsert_prices

    price = Price(
        model=model,
        input_per_mtok=input_,
        output_per_mtok=output,
        cached_input_per_mtok=cached_input,
        effective_from=parse_instant(from_, "--from"),
    )
    with _ledger(db) as engine:
        upsert_prices(engine, [price], source)
    click.echo(f"{model}: {input_} in / {output} out per million tokens from {_iso(price)}")


@command.command("backfill")
@db_option
@option("--model", required=True, help="Price this model's unpriced rows.")
@option(
    "--since",
    default=None,
    help="Only streams started from: a duration before now (7d) or an ISO date [default: all].",
)
@option("--until", default=None, help="Only streams started before this (duration or date).")
@option("--actor", default=None, help="Who runs this, for the record [default: user@host].")
@option("--dry-run", is_flag=True, default=False, help="Count what would be priced; write nothing.")
def backfill_(
    db: str, model: str, since: str | None, until: str | None, actor: str | None, dry_run: bool
) -> None:
    """Price rows recorded with an unknown cost, at the price now known for their start.

    A stream that started before its price reached the sidecar is recorded unpriced. This
    charges each such finished stream of MODEL at the ledger's price in force when it started,
    as the recorder would have, and records who did it, when and with which prices. Rows that
    have a price are never changed.

    \b
    Example:
      sidecar prices set llama-3.1-8b-instruct --input 0.20 --output 0.60 --from 2026-02-01
      sidecar prices backfill --model llama-3.1-8b-instruct --since 2026-02-01
    """
    from datetime import UTC, datetime

    from sidecar.ledger.backfill import backfill
    from sidecar.ledger.query import check_period, parse_time

    now = datetime.now(UTC)
    start = None if since is None else parse_time(since, "--since", now)
    end = None if until is None else parse_time(until, "--until", now)
    check_period(start, end)
    with _ledger(db) as engine:
        result = backfill(engine, model, start, end, actor or _whoami(), now, dry_run)
    verb = "would price" if dry_run else "priced"
    record = "" if result.backfill_id is None else f" (backfill #{result.backfill_id})"
    used = f" at {', '.join(result.price_keys)}" if result.price_keys else ""
    click.echo(f"{verb} {result.streams} unpriced streams of {model}{used}{record}")
    if result.still_unpriced:
        click.echo(
            f"{result.still_unpriced} unpriced streams started before any price of {model}; "
            "add an earlier price to price them"
        )


def _whoami() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@contextlib.contextmanager
def _ledger(db: str) -> Iterator[Engine]:
    from sidecar.cli.ledger import open_ledger

    with open_ledger(db) as engine:
        yield engine


def _iso(price: Price) -> str:
    return price.effective_from.isoformat()


def _fields(price: Price, source: str | None) -> dict[str, str | None]:
    cached = price.cached_input_per_mtok
    return {
        "model": price.model,
        "effective_from": _iso(price),
        "input_per_mtok": f"{price.input_per_mtok:f}",
        "output_per_mtok": f"{price.output_per_mtok:f}",
        "cached_input_per_mtok": None if cached is None else f"{cached:f}",
        "source": source,
    }


def render(rows: list[dict[str, str | None]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"prices": rows}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows([["" if r[f] is None else r[f] for f in FIELDS] for r in rows])
        return out.getvalue()
    if fmt == "toml":
        return "".join(_toml(r) for r in rows)
    if not rows:
        return "no prices in this ledger\n"
    cells = [[r[f] or "-" for f in FIELDS] for r in [*rows]]
    header = list(FIELDS)
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(FIELDS))]
    numeric = {2, 3, 4}

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, cells)]) + "\n"


def _toml(row: dict[str, str | None]) -> str:
    lines = ["[[price]]", f"model = {json.dumps(row['model'])}"]
    amounts = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")
    lines += [f"{key} = {json.dumps(row[key])}" for key in amounts if row[key] is not None]
    lines.append(f"effective_from = {row['effective_from']}")
    if row["source"] is not None:
        lines.append(f"# source: {row['source']}".replace("\n", " "))
    return "\n".join(lines) + "\n\n"
