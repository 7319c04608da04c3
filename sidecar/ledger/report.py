"""`sidecar report` queries: group the ledger's streams and sum tokens and money.

Money is summed as integer nano-dollars in SQL, combined exactly (`Fraction`, for GPU-hour
shares) and rounded to the nano-dollar once, as a `Decimal`; an unknown cost is `None` (see
`finish`). Latency columns: `latency.py`; GPU-hour shares: `gpuhours.py`.

What is summed comes from `facts.py`: hourly rollups where they are exact, stream rows
elsewhere; what-if prices (`ReportQuery.reprice`): `reprice.py`.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from sqlalchemy import Engine, func, select

from sidecar.ledger.facts import facts, snapshot
from sidecar.ledger.gpuhours import add_hourly, load_hourly
from sidecar.ledger.latency import add_latency
from sidecar.ledger.models import NANO
from sidecar.ledger.query import (
    CENTS_PRECISION,
    COUNT_KEYS,
    MONEY_KEYS,
    ReportQuery,
    dimension,
    plain,
)

SUMMED: Final = (*COUNT_KEYS, "cost_nusd", "wasted_cost_nusd")


def run_report(engine: Engine, query: ReportQuery) -> dict[str, Any]:
    dialect = engine.dialect.name
    with engine.connect() as connection:
        connection = snapshot(connection)
        hourly = query.hourly if query.hourly is not None else load_hourly(connection)
        src = facts(connection, query, per_instance=bool(hourly))
        dims = [dimension(d, dialect, src).label(d) for d in query.by]
        measures = [func.coalesce(func.sum(src.c[key]), 0).label(key) for key in SUMMED]
        statement = select(*dims, *measures)
        if dims:
            statement = statement.group_by(*dims).order_by(*dims)
        result = connection.execute(statement).mappings().all()
        rows = [_row(dict(r), query.by) for r in result if r["streams"]]
        if hourly:
            add_hourly(connection, dialect, query, src, hourly, rows)
        totals = _totals(rows)
        if query.latency:
            add_latency(connection, dialect, query, rows, totals)
    return {"rows": _ordered([finish(r) for r in rows], query), "totals": finish(totals)}


def _row(raw: dict[str, Any], by: tuple[str, ...]) -> dict[str, Any]:
    """A group's sums; money as exact `Fraction`s until `finish` rounds it."""
    row: dict[str, Any] = {d: plain(d, raw[d]) for d in by}
    for key in COUNT_KEYS:
        row[key] = int(raw[key] or 0)
    row["cost_usd"] = Fraction(int(raw["cost_nusd"]), NANO)
    row["wasted_cost_usd"] = Fraction(int(raw["wasted_cost_nusd"]), NANO)
    return row


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {key: sum(r[key] for r in rows) for key in COUNT_KEYS}
    for key in MONEY_KEYS:
        totals[key] = sum((r[key] for r in rows), Fraction(0))
    if any(r.get("idle") for r in rows):
        totals["idle_cost_usd"] = sum((r["cost_usd"] for r in rows if r.get("idle")), Fraction(0))
    return totals


def finish(row: dict[str, Any]) -> dict[str, Any]:
    """Round money to the nano-dollar; unknown when no stream of the row has a price (DESIGN
    §8): `None`, never zero. `cost_partial`: some streams priced, some not."""
    idle = bool(row.get("idle"))
    priced = row["streams"] - row["unpriced_streams"]
    known = priced > 0 or idle or "idle_cost_usd" in row
    for key in (*MONEY_KEYS, "idle_cost_usd"):
        if key in row:
            row[key] = _nano(row[key]) if known else None
    row["cost_partial"] = known and row["unpriced_streams"] > 0
    return row


def _nano(value: Fraction) -> Decimal:
    """Half to even, to nine decimal places, from the exact value."""
    return Decimal(round(value * NANO)) / NANO


def _ordered(rows: list[dict[str, Any]], query: ReportQuery) -> list[dict[str, Any]]:
    order = query.order or ("cost_usd" if query.top is not None else None)
    if order is not None and order not in query.by:
        # Descending; rows without a value (no latency sample, an unknown cost) last, in key
        # order like ties.
        def measure(row: dict[str, Any]) -> tuple[bool, Any]:
            value = waste_pct(row) if order == "waste_pct" else row[order]
            return (value is not None, 0 if value is None else value)

        rows = sorted(rows, key=measure, reverse=True)
    elif order is not None:
        rows = sorted(rows, key=lambda r: r[order])
    return rows if query.top is None else rows[: query.top]


# Formatting helpers ---------------------------------------------------------------------------


def waste_pct(row: dict[str, Any]) -> Decimal:
    generated = row["generated_tokens"]
    if not generated:
        return Decimal(0)
    wasted = Decimal(int(row["wasted_tokens"]))
    return (wasted * 100 / int(generated)).quantize(Decimal("0.1"))


def money(value: Decimal) -> str:
    """Six decimal places, as the report shows money (`None` is not money: see `finish`)."""
    return str(value.quantize(CENTS_PRECISION))
