"""`sidecar report`: what did this cost, and how much was wasted?"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import click

from sidecar.cli.options import option
from sidecar.ledger.report import COUNT_KEYS, money, waste_pct

COLUMNS = (*COUNT_KEYS[:5], "waste_pct", "cost_usd", "wasted_cost_usd", "unpriced_streams")


@click.command("report")
@option("--db", default="sqlite:///sidecar.db", show_default=True, help="Ledger database URL.")
@option(
    "--since",
    default="24h",
    show_default=True,
    help="Start: a duration before now (30m, 24h, 7d) or an ISO date.",
)
@option("--until", default=None, help="End (exclusive): a duration before now or an ISO date.")
@option(
    "--by",
    default="model,tenant",
    show_default=True,
    help="Group by any of model, tenant, day, hour, session, outcome, ingress.",
)
@option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def command(db: str, since: str, until: str | None, by: str, fmt: str) -> None:
    """Cost and waste per group: generated vs delivered tokens and what the waste cost.

    \b
    Example:
      sidecar report --since 24h --by model,tenant
      sidecar report --db postgresql+psycopg://ro@db/ledger --since 7d --by day --format json
    """
    from sidecar.ledger import db as ledger_db
    from sidecar.ledger.report import ReportQuery, parse_by, parse_time, run_report

    now = datetime.now(UTC)
    query = ReportQuery(
        by=parse_by(by),
        since=parse_time(since, "--since", now),
        until=None if until is None else parse_time(until, "--until", now),
    )
    engine = ledger_db.make_engine(db)
    ledger_db.require_migrated(engine, db)
    report = run_report(engine, query)
    click.echo(render(report, query.by, fmt), nl=False)


def render(report: dict[str, Any], by: tuple[str, ...], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_jsonable(report), indent=2) + "\n"
    rows = [_cells(r, by) for r in report["rows"]]
    totals = _cells(report["totals"], by, label="TOTAL")
    header = [*by, *COLUMNS]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()
    return _table(header, rows, totals, len(by))


def _cells(row: dict[str, Any], by: tuple[str, ...], label: str | None = None) -> list[str]:
    keys = [label or "" for _ in by] if label else [str(row[d]) for d in by]
    if label and by:
        keys = [label] + [""] * (len(by) - 1)
    values = [str(row[k]) for k in COUNT_KEYS[:5]]
    values += [f"{waste_pct(row)}%", money(row["cost_usd"]), money(row["wasted_cost_usd"])]
    values.append(str(row["unpriced_streams"]))
    return keys + values


def _table(header: list[str], rows: list[list[str]], totals: list[str], keys: int) -> str:
    if not rows:
        return "no streams in this period\n"
    widths = [max(len(r[i]) for r in [header, *rows, totals]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i < keys else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, rows), rule, line(totals)]) + "\n"


def _jsonable(report: dict[str, Any]) -> dict[str, Any]:
    def convert(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for key in ("cost_usd", "wasted_cost_usd"):
            out[key] = money(row[key])
        out["waste_pct"] = float(waste_pct(row))
        return out

    return {"rows": [convert(r) for r in report["rows"]], "totals": convert(report["totals"])}
