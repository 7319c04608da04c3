"""`sidecar report`: what did this cost, and how much was wasted?"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sidecar.accounting.hourly import HourlyBook
from sidecar.accounting.pricing import PriceBook
from sidecar.cli.options import option
from sidecar.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sidecar.accounting.pricefile import PriceFile
    from sidecar.ledger.query import ReportQuery

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
    help="Group by any of model, tenant, day, hour, session, outcome, ingress, route, instance "
    "(the sidecar replica that relayed the stream).",
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
    help="What-if: cost every stream under the prices in this TOML file, per-token and hourly, "
    "instead of the recorded ones (nothing is written).",
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

    Whole hours come from the ledger's hourly rollups (exact sums, kept up to date by `serve`
    or `sidecar db rollup`), so a month's bill does not read every stream; the period's edges,
    --by session, --reprice and the --latency columns read stream rows.

    \b
    Example:
      sidecar report --since 24h --by model,tenant
      sidecar report --db postgresql+psycopg://ro@db/ledger --since 7d --by day --format json
      sidecar report --since 30d --by tenant --top 5 --order wasted_cost_usd
      sidecar report --since 24h --by instance,outcome
      sidecar report --since 24h --by model --latency --order ttft_p95_s
      sidecar report --since 7d --format html --output report.html
      sidecar report --since 30d --by model --reprice new-prices.toml
    """
    from sidecar.cli.ledger import open_ledger
    from sidecar.ledger.query import ReportQuery, check_period, parse_by, parse_order, parse_time
    from sidecar.ledger.render import render
    from sidecar.ledger.report import run_report

    now = datetime.now(UTC)
    dims = parse_by(by)
    start = parse_time(since, "--since", now)
    end = None if until is None else parse_time(until, "--until", now)
    check_period(start, end)
    prices = None if reprice is None else load_reprice(reprice)
    query = ReportQuery(
        by=dims,
        since=start,
        until=end,
        latency=latency,
        order=None if order is None else parse_order(order, dims),
        top=top,
        reprice=None if prices is None else PriceBook(prices.prices),
        hourly=None if prices is None else HourlyBook(prices.hourly),
        now=now,
    )
    notes = () if reprice is None else (what_if(reprice),)
    with open_ledger(db) as engine:
        report = run_report(engine, query)
        html = fmt == "html"
        text = html_page(engine, query, report, now) if html else render(report, dims, fmt, notes)
    if output is None:
        click.echo(text, nl=False, color=True)  # data as it is: click strips ANSI otherwise
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot write ({exc.strerror or exc})") from None


def what_if(path: Path) -> str:
    return f"What-if: costs under the prices in {path}, not the recorded ones (nothing written)."


def load_reprice(path: Path) -> PriceFile:
    from sidecar.accounting.pricefile import parse_price_file

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--reprice {path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--reprice {path}: not a UTF-8 text file") from None
    return parse_price_file(text, f"--reprice {path}")


def html_page(engine: Engine, query: ReportQuery, report: dict[str, Any], now: datetime) -> str:
    """The html report: the table plus the timeline and tenant queries its charts need."""
    from dataclasses import replace

    from sidecar.ledger.html import HtmlReport, render_html
    from sidecar.ledger.render import columns_of
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
        notes.append("What-if: costs under the --reprice prices, not the recorded ones.")
    if query.top is not None:
        notes.append(f"Top {query.top} rows shown; totals cover every row.")
    data = HtmlReport(
        title=f"sidecar report by {', '.join(query.by) or 'everything'}",
        period=f"Streams started from {period}, generated {_when(now)}.",
        by=query.by,
        columns=columns_of(report),  # from sidecar.ledger.render
        report=report,
        timeline=timeline,
        bucket=bucket,
        tenants=tenants,
        notes=tuple(notes),
    )
    return render_html(data)


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
