"""`sidecar report` queries: group the ledger's streams and sum tokens and money.

Money is summed as integer nano-dollars in SQL and returned as `Decimal`.

Latency columns (`ReportQuery.latency`): `ttft_p50_s` and `ttft_p95_s` are percentiles of the
group's streams' time to first token; `heartbeat_rtt_p50_s` is the median of the per-session
heartbeat medians of the sessions that carried the group's streams (a median of medians: the
ledger keeps one summary per session, not every heartbeat; a session that carried streams of
several groups counts in each). Percentiles interpolate linearly between the two closest ranks:
PostgreSQL computes them with `percentile_cont`; on SQLite, which has no such aggregate, the
values are fetched and `interpolate` does the same float arithmetic, so both agree to the bit.

Repricing (`ReportQuery.reprice`) recomputes each stream's cost under another price book, at
the price in force when the stream started, rounded per stream exactly as the recorder does
(half to even, to a nano-dollar). It only reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import groupby
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Engine,
    Float,
    FromClause,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from sidecar.accounting.hourly import HourlyBook
from sidecar.accounting.pricing import PriceBook
from sidecar.errors import ConfigError
from sidecar.ledger.models import NANO, Session, Stream

DIMENSIONS: Final = ("model", "tenant", "day", "hour", "session", "outcome", "ingress")
COUNT_KEYS: Final = (
    "streams",
    "prompt_tokens",
    "generated_tokens",
    "delivered_tokens",
    "wasted_tokens",
    "unpriced_streams",
)
MONEY_KEYS: Final = ("cost_usd", "wasted_cost_usd")
LATENCY_KEYS: Final = ("ttft_p50_s", "ttft_p95_s", "heartbeat_rtt_p50_s")
ORDER_KEYS: Final = (*COUNT_KEYS, "waste_pct", *MONEY_KEYS, *LATENCY_KEYS)
CENTS_PRECISION: Final = Decimal("0.000001")
SECONDS_DIGITS: Final = 6
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PER_MTOK: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class ReportQuery:
    by: tuple[str, ...] = ("model", "tenant")
    since: datetime | None = None
    until: datetime | None = None
    latency: bool = False  # add LATENCY_KEYS to every row and the totals
    order: str | None = None  # a dimension (ascending) or a measure (descending)
    top: int | None = None  # keep the first N rows after ordering; totals cover all rows
    reprice: PriceBook | None = None  # charge under these prices instead of the stored costs
    hourly: HourlyBook | None = None  # GPU-hour prices; None: the ledger's
    now: datetime | None = None  # the end of an open period, for GPU hours [default: the clock]


def parse_by(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in parts if p not in DIMENSIONS]
    if unknown:
        raise ConfigError(f"--by {','.join(unknown)}: choose from {', '.join(DIMENSIONS)}")
    twice = sorted({p for p in parts if parts.count(p) > 1})
    if twice:
        raise ConfigError(f"--by {value}: {', '.join(twice)} named twice; name each group once")
    return parts


def parse_order(value: str, by: tuple[str, ...]) -> str:
    if value in by or value in ORDER_KEYS:
        return value
    raise ConfigError(f"--order {value}: choose from {', '.join((*by, *ORDER_KEYS))}")


def parse_time(value: str, option: str, now: datetime) -> datetime:
    """`24h`, `7d`, `30m` before `now`, or an ISO date/datetime (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip())
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except (OverflowError, ValueError):
            raise ConfigError(
                f"{option} {value}: reaches before the year 1; use a shorter duration or a date"
            ) from None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option} {value!r}: use a duration like 24h or 7d, or a date like 2026-01-31"
        ) from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def check_period(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ConfigError(
            f"--since ({since:%Y-%m-%d %H:%M}) is not before --until ({until:%Y-%m-%d %H:%M}) "
            "UTC: the period is empty; swap them"
        )


def _dimension(name: str, dialect: str, src: FromClause) -> Any:
    column = src.c.started_at
    if name in ("day", "hour"):
        if dialect == "postgresql":
            # Immutable expressions, so that extended statistics on them can tell the planner
            # how few groups there are; `_plain` turns the values into the SQLite strings.
            utc = func.timezone(literal_column("'UTC'"), column)
            hour = func.date_trunc(literal_column("'hour'"), utc)
            return cast(utc, Date) if name == "day" else hour
        if name == "day":
            return func.substr(column, 1, 10)
        return func.substr(column, 1, 10) + literal("T") + func.substr(column, 12, 2) + ":00"
    return {
        "model": src.c.model,
        "tenant": src.c.tenant,
        # An HTTP request is its own session: it has no WebSocket session id.
        "session": func.coalesce(src.c.session_id, src.c.id),
        "outcome": func.coalesce(src.c.outcome, literal("running")),
        "ingress": src.c.ingress,
    }[name]


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:00")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _in_period(src: FromClause, query: ReportQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.since is not None:
        conditions.append(src.c.started_at >= query.since)
    if query.until is not None:
        conditions.append(src.c.started_at < query.until)
    return conditions


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
    dims = [_dimension(d, dialect, src).label(d) for d in query.by]
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
    statement = select(*dims, *measures).where(*_in_period(src, query))
    if dims:
        statement = statement.group_by(*dims).order_by(*dims)
    with engine.connect() as connection:
        result = connection.execute(statement).mappings().all()
        rows = [_row(dict(r), query.by) for r in result if r["streams"]]
        from sidecar.ledger.gpuhours import add_hourly, load_hourly  # it uses this module

        hourly = query.hourly if query.hourly is not None else load_hourly(connection)
        if hourly:
            add_hourly(connection, dialect, query, src, ~priced, hourly, rows)
        totals = _totals(rows)
        if query.latency:
            _add_latency(connection, dialect, query, rows, totals)
    return {"rows": _ordered([finish(r) for r in rows], query), "totals": finish(totals)}


def _row(raw: dict[str, Any], by: tuple[str, ...]) -> dict[str, Any]:
    """A group's sums; money as exact `Fraction`s until `finish` rounds it."""
    row: dict[str, Any] = {d: _plain(d, raw[d]) for d in by}
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


# Latency percentiles --------------------------------------------------------------------------

Key = tuple[Any, ...]
Latency = tuple[float | None, float | None, float | None]  # ttft p50, ttft p95, rtt p50
NO_LATENCY: Final[Latency] = (None, None, None)
TTFT_QUANTILES: Final = (0.5, 0.95)
FETCH_ROWS: Final = 50_000
ID_BATCH: Final = 5_000


def interpolate(ordered: Sequence[float], quantile: float) -> float | None:
    """Linear interpolation between the closest ranks, computed exactly as PostgreSQL's
    `percentile_cont` computes it (same float operations), so both backends agree."""
    if not ordered:
        return None
    position = quantile * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    if high == low:
        return ordered[low]
    fraction = position - low
    return ordered[low] + fraction * (ordered[high] - ordered[low])


def _add_latency(
    connection: Connection,
    dialect: str,
    query: ReportQuery,
    rows: list[dict[str, Any]],
    totals: dict[str, Any],
) -> None:
    compute = _latency_postgresql if dialect == "postgresql" else _latency_python
    by_key, overall = compute(connection, dialect, query)
    targets = [(r, by_key.get(tuple(r[d] for d in query.by), NO_LATENCY)) for r in rows]
    for target, (ttft_p50, ttft_p95, rtt_p50) in [*targets, (totals, overall)]:
        target["ttft_p50_s"] = _seconds(ttft_p50)
        target["ttft_p95_s"] = _seconds(ttft_p95)
        target["heartbeat_rtt_p50_s"] = _seconds(rtt_p50)


def _latency_python(
    connection: Connection, dialect: str, query: ReportQuery
) -> tuple[dict[Key, Latency], Latency]:
    """Fetch each stream's group, TTFT and session and rank in Python: SQLite has no
    percentile aggregate, and ranking with its window functions is several times slower."""
    table: FromClause = Stream.__table__
    dims = [_dimension(d, dialect, table) for d in query.by]
    period = _in_period(table, query)
    ttft: dict[Key, list[float]] = {}
    sessions: dict[Key, set[str]] = {}
    width = len(dims)
    statement = select(*dims, table.c.ttft_s, table.c.session_id).where(*period)
    for chunk in connection.execute(statement).partitions(FETCH_ROWS):
        for row in chunk:  # the dimensions are already plain strings on SQLite
            key, value, session = row[:width], row[width], row[width + 1]
            if value is not None:
                ttft.setdefault(key, []).append(value)
            if session is not None:
                sessions.setdefault(key, set()).add(session)
    every_session: set[str] = set().union(*sessions.values())
    rtt_of: dict[str, float] = {}
    ids = sorted(every_session)
    for start in range(0, len(ids), ID_BATCH):
        found = connection.execute(
            select(Session.id, Session.heartbeat_rtt_p50_s).where(
                Session.id.in_(ids[start : start + ID_BATCH]),
                Session.heartbeat_rtt_p50_s.is_not(None),
            )
        )
        rtt_of.update((sid, rtt) for sid, rtt in found if rtt is not None)

    def latency(values: list[float], ids: set[str]) -> Latency:
        values.sort()
        rtts = sorted(rtt_of[i] for i in ids if i in rtt_of)
        p50, p95 = (interpolate(values, q) for q in TTFT_QUANTILES)
        return p50, p95, interpolate(rtts, 0.5)

    by_key = {k: latency(ttft.get(k, []), sessions.get(k, set())) for k in ttft.keys() | sessions}
    everything = [v for values in ttft.values() for v in values]
    return by_key, latency(everything, every_session)


def _latency_postgresql(
    connection: Connection, dialect: str, query: ReportQuery
) -> tuple[dict[Key, Latency], Latency]:
    """`percentile_cont` per group and overall (GROUPING SETS: one scan for both)."""
    table: FromClause = Stream.__table__
    dims = [_dimension(d, dialect, table).label(d) for d in query.by]
    period = _in_period(table, query)
    quantiles = literal(list(TTFT_QUANTILES), postgresql.ARRAY(Float))
    ttft = select(
        *dims, func.percentile_cont(quantiles).within_group(table.c.ttft_s).label("q")
    ).where(*period, table.c.ttft_s.is_not(None))
    pairs = (
        select(*dims, table.c.session_id.label("sid"))
        .where(*period, table.c.session_id.is_not(None))
        .distinct()
        .subquery("pairs")
    )
    keys = [pairs.c[d] for d in query.by]
    rtt = (
        select(
            *keys, func.percentile_cont(0.5).within_group(Session.heartbeat_rtt_p50_s).label("q")
        )
        .join_from(pairs, Session, Session.id == pairs.c.sid)
        .where(Session.heartbeat_rtt_p50_s.is_not(None))
    )
    ttft_by, ttft_all = _grouped(connection, ttft, dims, query.by)
    rtt_by, rtt_all = _grouped(connection, rtt, keys, query.by)
    by_key: dict[Key, Latency] = {}
    for key in ttft_by.keys() | rtt_by.keys():
        p50, p95 = ttft_by.get(key) or (None, None)
        by_key[key] = (p50, p95, _first(rtt_by.get(key)))
    p50, p95 = ttft_all or (None, None)
    return by_key, (p50, p95, _first(rtt_all))


def _first(values: list[float] | None) -> float | None:
    return values[0] if values else None


def _grouped(
    connection: Connection, statement: Select[Any], keys: list[Any], by: Sequence[str]
) -> tuple[dict[Key, list[float]], list[float] | None]:
    """Run `statement` per group of `keys` and once over everything."""
    if not keys:
        whole = connection.execute(statement).scalar()
        return {}, _floats(whole)
    sets = func.grouping_sets(tuple_(*keys), tuple_())
    total = func.grouping(*keys).label("is_total")
    groups: dict[Key, list[float]] = {}
    overall: list[float] | None = None
    for row in connection.execute(statement.add_columns(total).group_by(sets)).mappings():
        values = _floats(row["q"])
        if row["is_total"]:
            overall = values
        elif values is not None:
            groups[tuple(_plain(d, row[d]) for d in by)] = values
    return groups, overall


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, SECONDS_DIGITS)


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
