"""`sidecar report` queries: group the ledger's streams and sum tokens and money.

Money is summed as integer nano-dollars in SQL, combined exactly (`Fraction`, for GPU-hour
shares) and rounded to the nano-dollar once, as a `Decimal`; an unknown cost is `None` (see
`finish`). Latency columns: `latency.py`; GPU-hour shares: `gpuhours.py`.

Repricing (`ReportQuery.reprice`) recomputes each stream's cost under another price book, at
the price in force when the stream started, rounded per stream exactly as the recorder does
(half to even, to a nano-dollar). It only reads.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from itertools import groupby
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    FromClause,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
)

from sidecar.accounting.pricing import PriceBook
from sidecar.errors import ConfigError
from sidecar.ledger.gpuhours import add_hourly, load_hourly
from sidecar.ledger.latency import add_latency
from sidecar.ledger.models import NANO, Stream
from sidecar.ledger.query import (
    CENTS_PRECISION,
    COUNT_KEYS,
    MONEY_KEYS,
    ReportQuery,
    dimension,
    in_period,
    plain,
)

_PER_MTOK: Final = 1_000_000


def run_report(engine: Engine, query: ReportQuery) -> dict[str, Any]:
    dialect = engine.dialect.name
    src: FromClause = Stream.__table__
    if query.reprice is None:
        priced = src.c.price_key.is_not(None)
        prompt_cost, generated_cost = src.c.prompt_cost_nusd, src.c.generated_cost_nusd
        wasted_cost = src.c.wasted_cost_nusd
    else:
        src = _repriced(query.reprice)
        priced = src.c.p_in.is_not(None)
        prompt_cost = _half_even_per_mtok(src.c.prompt_tokens * src.c.p_in)
        generated_cost = _half_even_per_mtok(src.c.generated_tokens * src.c.p_out)
        wasted_cost = _half_even_per_mtok(src.c.wasted_tokens * src.c.p_out)
    dims = [dimension(d, dialect, src).label(d) for d in query.by]
    nusd = func.coalesce(func.sum(prompt_cost), 0) + func.coalesce(func.sum(generated_cost), 0)
    measures = [
        func.count().label("streams"),
        func.coalesce(func.sum(src.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(src.c.generated_tokens), 0).label("generated_tokens"),
        func.coalesce(func.sum(src.c.delivered_tokens), 0).label("delivered_tokens"),
        func.coalesce(func.sum(src.c.wasted_tokens), 0).label("wasted_tokens"),
        func.sum(case((priced, 0), else_=1)).label("unpriced_streams"),
        nusd.label("cost_nusd"),
        func.coalesce(func.sum(wasted_cost), 0).label("wasted_cost_nusd"),
    ]
    statement = select(*dims, *measures).where(*in_period(src, query))
    if dims:
        statement = statement.group_by(*dims).order_by(*dims)
    with engine.connect() as connection:
        result = connection.execute(statement).mappings().all()
        rows = [_row(dict(r), query.by) for r in result if r["streams"]]
        hourly = query.hourly if query.hourly is not None else load_hourly(connection)
        if hourly:
            add_hourly(connection, dialect, query, src, ~priced, hourly, rows)
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


# Repricing ------------------------------------------------------------------------------------


def _nusd_per_mtok(value: Decimal, model: str) -> int:
    scaled = value * NANO
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"--reprice: price {value} of {model} has more than 9 decimal places")
    return int(scaled)


def _repriced(book: PriceBook) -> FromClause:
    """Streams with the reprice book's input and output prices (nano-USD per million tokens)
    in force at each stream's start, NULL where the book has none."""
    input_whens: list[tuple[ColumnElement[bool], Any]] = []
    output_whens: list[tuple[ColumnElement[bool], Any]] = []
    for model, prices in groupby(book, key=lambda p: p.model):
        history = list(prices)
        for n, price in enumerate(history):
            window = [Stream.model == model, Stream.started_at >= price.effective_from]
            if n + 1 < len(history):
                window.append(Stream.started_at < history[n + 1].effective_from)
            condition = and_(*window)
            p_in = _nusd_per_mtok(price.input_per_mtok, model)
            p_out = _nusd_per_mtok(price.output_per_mtok, model)
            input_whens.append((condition, literal(p_in, BigInteger)))
            output_whens.append((condition, literal(p_out, BigInteger)))
    p_in_expr = case(*input_whens, else_=null()) if input_whens else null()
    p_out_expr = case(*output_whens, else_=null()) if output_whens else null()
    columns = [
        Stream.id,
        Stream.instance_id,
        Stream.started_at,
        Stream.model,
        Stream.tenant,
        Stream.session_id,
        Stream.outcome,
        Stream.ingress,
        Stream.path,
        Stream.prompt_tokens,
        Stream.generated_tokens,
        Stream.delivered_tokens,
        Stream.wasted_tokens,
    ]
    return select(*columns, p_in_expr.label("p_in"), p_out_expr.label("p_out")).subquery("repriced")


def _half_even_per_mtok(product: Any) -> Any:
    """round(tokens × nano-USD-per-million / 1e6) half to even, in integer SQL arithmetic."""
    quotient, remainder = product // _PER_MTOK, product % _PER_MTOK
    half = _PER_MTOK // 2
    up = or_(remainder > half, and_(remainder == half, quotient % 2 == 1))
    return quotient + case((up, 1), else_=0)


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
