"""`sidecar report`: what did this cost, and how much was wasted?"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sidecar.cli.options import option
from sidecar.errors import ConfigError
from sidecar.ledger.report import COUNT_KEYS, LATENCY_KEYS, money, waste_pct

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sidecar.accounting.pricing import PriceBook
    from sidecar.ledger.report import ReportQuery

COLUMNS = (*COUNT_KEYS[:5], "waste_pct", "cost_usd", "wasted_cost_usd", "unpriced_streams")
TOP_TENANTS = 10


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
    "--latency/--no-latency",
    default=False,
    show_default=True,
    help="Add p50/p95 time to first token and median heartbeat RTT (seconds) per row; "
    "reads every stream's TTFT, so it is slower on a big ledger.",
)
@option(
    "--order",
    default=None,
    help="Sort rows by a column: measures descending (e.g. wasted_cost_usd), groups ascending.",
)
@option(
    "--top",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the first N rows (by --order, else by cost_usd); totals still cover every row.",
)
@option(
    "--reprice",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="What-if: cost every stream under the prices in this TOML file (nothing is written).",
)
@option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="html: one self-contained page with charts (opens offline).",
)
@option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def command(
    db: str,
    since: str,
    until: str | None,
    by: str,
    latency: bool,
    order: str | None,
    top: int | None,
    reprice: Path | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Cost and waste per group: generated vs delivered tokens and what the waste cost.

    Costs are the ones recorded with each stream (the price in force when it started); a later
    price change does not alter them. --reprice shows what the same streams would cost under
    other prices. The heartbeat RTT column is the median of the sessions' own medians.

    \b
    Example:
      sidecar report --since 24h --by model,tenant
      sidecar report --db postgresql+psycopg://ro@db/ledger --since 7d --by day --format json
      sidecar report --since 30d --by tenant --top 5 --order wasted_cost_usd
      sidecar report --since 24h --by model --latency --order ttft_p95_s
      sidecar report --since 7d --format html --output report.html
      sidecar report --since 30d --by model --reprice new-prices.toml
    """
    from sidecar.ledger import db as ledger_db
    from sidecar.ledger.report import ReportQuery, parse_by, parse_order, parse_time, run_report

    now = datetime.now(UTC)
    dims = parse_by(by)
    query = ReportQuery(
        by=dims,
        since=parse_time(since, "--since", now),
        until=None if until is None else parse_time(until, "--until", now),
        latency=latency,
        order=None if order is None else parse_order(order, dims),
        top=top,
        reprice=None if reprice is None else load_reprice(reprice),
    )
    engine = ledger_db.make_engine(db)
    try:
        ledger_db.require_migrated(engine, db)
        report = run_report(engine, query)
        html = fmt == "html"
        text = html_page(engine, query, report, now) if html else render(report, query.by, fmt)
    finally:
        engine.dispose()
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot write ({exc.strerror or exc})") from None


def load_reprice(path: Path) -> PriceBook:
    from sidecar.accounting.pricing import PriceBook, parse_price_toml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--reprice {path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--reprice {path}: not a UTF-8 text file") from None
    return PriceBook(parse_price_toml(text, f"--reprice {path}"))


def columns_of(report: dict[str, Any]) -> tuple[str, ...]:
    latency = LATENCY_KEYS if LATENCY_KEYS[0] in report["totals"] else ()
    return (*COLUMNS, *latency)


def render(report: dict[str, Any], by: tuple[str, ...], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_jsonable(report), indent=2) + "\n"
    columns = columns_of(report)
    header = [*by, *columns]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(_cells(r, by, columns, missing="") for r in report["rows"])
        return out.getvalue()
    rows = [_cells(r, by, columns) for r in report["rows"]]
    totals = _cells(report["totals"], by, columns, label="TOTAL")
    return _table(header, rows, totals, len(by))


def _cells(
    row: dict[str, Any],
    by: tuple[str, ...],
    columns: tuple[str, ...],
    label: str | None = None,
    missing: str = "-",
) -> list[str]:
    keys = [label] + [""] * (len(by) - 1) if label and by else [str(row[d]) for d in by]
    values = [str(row[k]) for k in COUNT_KEYS[:5]]
    values += [f"{waste_pct(row)}%", money(row["cost_usd"]), money(row["wasted_cost_usd"])]
    values.append(str(row["unpriced_streams"]))
    for key in columns[len(COLUMNS) :]:
        value = row[key]
        values.append(missing if value is None else f"{value:.3f}")
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


def html_page(engine: Engine, query: ReportQuery, report: dict[str, Any], now: datetime) -> str:
    """The html report: the table plus the timeline and tenant queries its charts need."""
    from dataclasses import replace

    from sidecar.ledger.html import HtmlReport, render_html
    from sidecar.ledger.report import run_report

    end = query.until or now
    bucket = "hour" if query.since is not None and end - query.since <= timedelta(days=2) else "day"
    plain = replace(query, latency=False, order=None, top=None)
    timeline = run_report(engine, replace(plain, by=(bucket, "model")))
    tenants = run_report(
        engine, replace(plain, by=("tenant",), order="wasted_cost_usd", top=TOP_TENANTS)
    )
    start = "the beginning" if query.since is None else _when(query.since)
    period = f"{start} to {_when(query.until) if query.until else 'now'} (UTC)"
    notes = []
    if query.reprice is not None:
        notes.append("Repriced: costs under the --reprice prices, not the recorded ones.")
    if query.top is not None:
        notes.append(f"Top {query.top} rows shown; totals cover every row.")
    data = HtmlReport(
        title=f"sidecar report by {', '.join(query.by) or 'everything'}",
        period=f"Streams started from {period}, generated {_when(now)}.",
        by=query.by,
        columns=columns_of(report),
        report=report,
        timeline=timeline,
        bucket=bucket,
        tenants=tenants,
        notes=tuple(notes),
    )
    return render_html(data)


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
