"""`sidecar demo`."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

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
    from sidecar.cli.report import render
    from sidecar.demo import run_demo
    from sidecar.ledger import db as ledger_db
    from sidecar.ledger.report import ReportQuery, run_report
    from sidecar.serve import loop_factory

    try:
        sim_port, listen_port, admin_port = (int(p) for p in ports.split(","))
    except ValueError:
        raise click.BadParameter("expected three ports like 18000,18080,19464") from None
    begun = datetime.now(UTC) - timedelta(seconds=1)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        tally = runner.run(run_demo(db, seconds, users, (sim_port, listen_port, admin_port), seed))
    sys.stderr.write("\n")
    click.echo(
        f"\n{tally.started} streams: {tally.completed} read to the end, {tally.cancelled} "
        f"stopped by the user, {tally.vanished} abandoned mid-answer "
        f"({len(tally.errors)} client errors).\n"
    )
    engine = ledger_db.make_engine(db)
    for by in (("model", "tenant"), ("outcome",)):
        report = run_report(engine, ReportQuery(by=by, since=begun))
        click.echo(f"Cost report by {', '.join(by)} (this run):")
        click.echo(render(report, by, "table"))
    totals = run_report(engine, ReportQuery(by=(), since=begun))["totals"]
    click.echo(
        f"Generated {totals['generated_tokens']} tokens, delivered {totals['delivered_tokens']}: "
        f"{totals['wasted_tokens']} wasted, costing ${totals['wasted_cost_usd']:.6f} of "
        f"${totals['cost_usd']:.6f}.\nRun `sidecar report --by model,tenant` for the whole ledger."
    )
