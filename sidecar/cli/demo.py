"""`sidecar demo`."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import click

from sidecar.cli.options import option


@click.command("demo")
@option("--db", default="sqlite:///sidecar.db", show_default=True, help="Ledger database URL.")
@option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="How long the simulated users keep talking.",
)
@option("--users", type=click.IntRange(min=1, max=2000), default=40, show_default=True)
@option(
    "--ports",
    default="18000,18080,19464",
    show_default=True,
    help="Loopback ports for the simulated model server, the sidecar and its admin endpoint.",
)
@option("--seed", type=int, default=7, show_default=True)
def command(db: str, seconds: float, users: int, ports: str, seed: int) -> None:
    """Simulated model server + sidecar + simulated users, then the cost report.

    \b
    Example:
      sidecar demo --seconds 20 --users 40
    """
    from sidecar.demo import run_demo
    from sidecar.ledger import db as ledger_db
    from sidecar.ledger.query import ReportQuery
    from sidecar.ledger.render import render
    from sidecar.ledger.report import run_report
    from sidecar.serve import loop_factory

    try:
        sim_port, listen_port, admin_port = (int(p) for p in ports.split(","))
    except ValueError:
        raise click.BadParameter("expected three ports like 18000,18080,19464") from None
    begun = datetime.now(UTC) - timedelta(seconds=1)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        tally = runner.run(run_demo(db, seconds, users, (sim_port, listen_port, admin_port), seed))
    sys.stderr.write("\n")
    engine = ledger_db.make_engine(db)
    try:
        outcomes = run_report(engine, ReportQuery(by=("outcome",), since=begun))
        click.echo(f"\n{what_happened(outcomes, len(tally.errors))}\n")
        for by in (("model", "tenant"), ("route",), ("outcome",)):
            report = run_report(engine, ReportQuery(by=by, since=begun))
            click.echo(f"Cost report by {', '.join(by)} (this run):")
            click.echo(render(report, by, "table", ()))
        totals = run_report(engine, ReportQuery(by=(), since=begun))["totals"]
    finally:
        engine.dispose()
    click.echo(
        f"Generated {totals['generated_tokens']} tokens, delivered {totals['delivered_tokens']}: "
        f"{totals['wasted_tokens']} wasted, costing ${_usd(totals['wasted_cost_usd'])} of "
        f"${_usd(totals['cost_usd'])}.\n"
        "Run `sidecar report --by model,tenant` for the whole ledger."
    )


OUTCOME_WORDS = {
    "completed": "read to the end",
    "client_cancelled": "stopped by the user",
    "client_gone": "abandoned mid-answer",
}


def what_happened(report: dict[str, Any], client_errors: int) -> str:
    """The run's outcomes as the ledger recorded them (not what the simulated users meant to
    do: a user who pressed stop after the answer ended was not cancelled)."""
    counts = {str(r["outcome"]): int(r["streams"]) for r in report["rows"]}
    parts = [f"{counts.pop(o)} {OUTCOME_WORDS[o]} ({o})" for o in OUTCOME_WORDS if o in counts]
    parts += [f"{n} ended otherwise ({o})" for o, n in sorted(counts.items())]
    total = report["totals"]["streams"]
    listed = ", ".join(parts) or "none"
    return f"{total} streams in the ledger: {listed} ({client_errors} client errors)."


def _usd(value: Decimal | None) -> str:
    return "an unknown amount" if value is None else f"{value:.6f}"
