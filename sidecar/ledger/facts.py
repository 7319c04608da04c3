"""The rows a `sidecar report` sums: hourly rollups where they are exact, stream rows elsewhere.

Every source is projected to the same summable columns (`streams`, `cost_nusd`, ...; a stream
row counts 1), so the report and the GPU-hour share sum them alike. Rollups serve a report
grouped by model, tenant, day, hour, outcome, ingress and instance (`model_rollups` one that
groups by neither tenant nor instance); grouping by session and
what-if prices (`--reprice`, rounded per stream) read stream rows only, as do the latency
columns (`latency.py`: percentiles are not sums, so they stay exact from the rows' TTFTs).

The caller reads the rollups' state and the facts in one snapshot (`snapshot`), so a refresh
or a write committed in between cannot count a stream twice or lose it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)

from sidecar.ledger.models import ModelRollup, RollupMark, RollupState, Stream, StreamRollup
from sidecar.ledger.query import ReportQuery
from sidecar.ledger.reprice import half_even_per_mtok, repriced
from sidecar.ledger.rollplan import Plan, Range, floor_hour, plan, rollup_span
from sidecar.ledger.rollup import SUMS

# What a model_rollups row keeps (no tenant, no instance): the smaller table, when it will do.
MODEL_DIMENSIONS: Final = frozenset(("model", "day", "hour", "outcome", "ingress"))
ROLLUP_DIMENSIONS: Final = frozenset(
    ("model", "tenant", "day", "hour", "outcome", "ingress", "instance")
)


def rollups_apply(query: ReportQuery) -> bool:
    return query.rollups and query.reprice is None and set(query.by) <= ROLLUP_DIMENSIONS


def snapshot(connection: Connection) -> Connection:
    """Make every statement on `connection` read one snapshot (call before the first)."""
    if connection.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="REPEATABLE READ")
    connection.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads by itself
    return connection


def report_plan(connection: Connection, query: ReportQuery) -> Plan:
    everything = Plan(rollup=(), running=(), raw=((query.since, query.until),))
    if not rollups_apply(query):
        return everything
    state = connection.execute(select(RollupState.rolled_until, RollupState.pruned_before)).one()
    rolled_until = None if state.rolled_until is None else floor_hour(state.rolled_until)
    pruned = None if state.pruned_before is None else floor_hour(state.pruned_before)
    span = rollup_span(query.since, query.until, rolled_until)
    if span is None:
        return everything
    marks = RollupMark.__table__.c
    stale = connection.execute(select(marks.hour).where(_within(marks.hour, [span])).distinct())
    hours = (floor_hour(h) for h in stale.scalars())
    # Before `pruned`, the rollups are all there is: a stale mark there cannot be honoured.
    return plan(
        query.since, query.until, rolled_until, (h for h in hours if pruned is None or h >= pruned)
    )


def facts(connection: Connection, query: ReportQuery, per_instance: bool = False) -> FromClause:
    """The report period's facts, one row per stream or per rollup row. `per_instance`: the
    caller needs each fact's instance and model (GPU-hour shares), whatever the grouping."""
    if query.reprice is not None:
        src = repriced(query.reprice)
        priced = src.c.p_in.is_not(None)
        costs = (
            half_even_per_mtok(src.c.prompt_tokens * src.c.p_in),
            half_even_per_mtok(src.c.generated_tokens * src.c.p_out),
            half_even_per_mtok(src.c.wasted_tokens * src.c.p_out),
        )
        return _rows(
            src, priced, costs, [_within(src.c.started_at, [(query.since, query.until)])]
        ).subquery("facts")
    table: FromClause = Stream.__table__
    c = table.c
    recorded = (c.prompt_cost_nusd, c.generated_cost_nusd, c.wasted_cost_nusd)
    priced = c.price_key.is_not(None)
    parts = report_plan(connection, query)
    selects: list[Select[Any]] = []
    if parts.raw:
        selects.append(_rows(table, priced, recorded, [_within(c.started_at, parts.raw)]))
    if parts.running:
        running = [c.outcome.is_(None), _within(c.started_at, parts.running)]
        selects.append(_rows(table, priced, recorded, running))
    if parts.rollup:
        coarse = not per_instance and set(query.by) <= MODEL_DIMENSIONS
        selects.append(_rollups(ModelRollup if coarse else StreamRollup, parts.rollup))
    if len(selects) == 1:
        return selects[0].subquery("facts")
    return union_all(*selects).subquery("facts")


def _rows(
    src: FromClause, priced: ColumnElement[bool], costs: tuple[Any, Any, Any], where: list[Any]
) -> Select[Any]:
    prompt_cost, generated_cost, wasted_cost = costs
    c = src.c

    def unpriced(value: Any) -> Any:
        return case((priced, 0), else_=value)

    return select(
        c.started_at,
        c.instance_id,
        c.model,
        c.tenant,
        c.session_id,
        c.id,
        c.outcome,
        c.ingress,
        c.path,
        literal(1).label("streams"),
        unpriced(1).label("unpriced_streams"),
        c.prompt_tokens,
        c.generated_tokens,
        c.delivered_tokens,
        c.wasted_tokens,
        (func.coalesce(prompt_cost, 0) + func.coalesce(generated_cost, 0)).label("cost_nusd"),
        func.coalesce(wasted_cost, 0).label("wasted_cost_nusd"),
        unpriced(c.prompt_tokens).label("unpriced_prompt_tokens"),
        unpriced(c.generated_tokens).label("unpriced_generated_tokens"),
        unpriced(c.wasted_tokens).label("unpriced_wasted_tokens"),
    ).where(*where)


def _rollups(
    table: type[StreamRollup] | type[ModelRollup], ranges: tuple[Range, ...]
) -> Select[Any]:
    c = table.__table__.c
    text = null().cast(String)
    return select(
        c.hour.label("started_at"),
        c.instance_id if "instance_id" in c else text.label("instance_id"),
        c.model,
        c.tenant if "tenant" in c else text.label("tenant"),
        text.label("session_id"),  # session grouping never reads rollups
        text.label("id"),
        c.outcome,
        c.ingress,
        text.label("path"),  # route grouping never reads rollups
        *(c[name] for name in SUMS),
    ).where(_within(c.hour, ranges))


def _within(column: Any, ranges: Any) -> ColumnElement[bool]:
    """`column` in any of the [start, end) ranges (None: unbounded)."""
    conditions: list[ColumnElement[bool]] = []
    for start, end in ranges:
        bounds = [column >= _utc(start)] if start is not None else []
        if end is not None:
            bounds.append(column < _utc(end))
        conditions.append(and_(*bounds) if bounds else true())
    return or_(*conditions)


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)
