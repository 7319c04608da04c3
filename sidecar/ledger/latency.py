"""Latency columns of `sidecar report` (`ReportQuery.latency`).

`ttft_p50_s` and `ttft_p95_s` are percentiles of the group's streams' time to first token;
`heartbeat_rtt_p50_s` is the median of the per-session heartbeat medians of the sessions that
carried the group's streams (a median of medians: the ledger keeps one summary per session, not
every heartbeat; a session that carried streams of several groups counts in each). Percentiles
interpolate linearly between the two closest ranks: PostgreSQL computes them with
`percentile_cont`; on SQLite, which has no such aggregate, the values are fetched and
`interpolate` does the same float arithmetic, so both agree to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Float, FromClause, Select, func, literal, select, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from sidecar.ledger.models import Session, Stream
from sidecar.ledger.query import ReportQuery, dimension, in_period, plain

SECONDS_DIGITS: Final = 6
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


def add_latency(
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
    dims = [dimension(d, dialect, table) for d in query.by]
    period = in_period(table, query)
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
    dims = [dimension(d, dialect, table).label(d) for d in query.by]
    period = in_period(table, query)
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
            groups[tuple(plain(d, row[d]) for d in by)] = values
    return groups, overall


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, SECONDS_DIGITS)
