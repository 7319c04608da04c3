"""Hourly rollups of finished streams: how they stay exact, and the job that refreshes them.

A rollup row sums the finished streams of one UTC hour (by start) and one group (model,
tenant, outcome, ingress, instance); `model_rollups` sums those again over tenants and
instances, so a report by model, day or outcome reads a number of rows that stops growing
with traffic and with the size of the fleet. It is never adjusted by a delta: a stale hour is
recomputed whole from its stream rows, so checkpoints, replayed final rows, an `interrupted`
row later overwritten by its real final row, and price backfills all end up counted once, at
their final state.

Staleness is tracked, not guessed. Every code path that turns a stream row final or changes a
final one (the writer's final upserts, crash recovery, price backfills) upserts a mark for
the row's hour in the same transaction (`mark_stale`); the mark's `version` grows with each
change. `refresh` recomputes an hour and deletes only the marks it read before recomputing,
with the versions it read, so a change committed meanwhile leaves its mark for the next run.
Marks are per writing instance: replicas never wait on one another's mark row.

`rollup_state.rolled_until` is the high-water mark: hours before it are rolled up unless
marked; hours after it are not yet, and the report reads their rows (`rollplan.py`). The
refresh leaves the last `SETTLE` alone, as most of its streams are still running.

Hours before `rollup_state.pruned_before` lost their stream rows to `sidecar db prune`
(`retention.py`): they are never recomputed, and their marks are dropped.

Rows written to `streams` by anything else (a bulk load, hand-written SQL, a sidecar from
before rollups during a rolling upgrade) leave no mark: follow them with
`sidecar db rollup --rebuild`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from sidecar.errors import LedgerError
from sidecar.ledger.models import ModelRollup, RollupMark, RollupState, Stream, StreamRollup
from sidecar.ledger.rollplan import HOUR, Range, floor_hour

log = logging.getLogger("sidecar.ledger")

SETTLE: Final = timedelta(minutes=10)
CHUNK: Final = timedelta(days=1)  # hours rolled up per transaction when catching up
STALE_BATCH: Final = 48  # stale hours recomputed per transaction
INTERVAL_S: Final = 60.0
KEYS: Final = ("model", "tenant", "outcome", "ingress", "instance_id")
MODEL_KEYS: Final = ("model", "outcome", "ingress")  # ModelRollup's, besides the hour
# The summed columns, shared by both rollup tables.
SUMS: Final = tuple(c.name for c in StreamRollup.__table__.c if not c.primary_key)
Mark = tuple[datetime, str]  # (hour, instance_id)


@dataclass(frozen=True, slots=True)
class Refreshed:
    hours: int  # hours recomputed
    rows: int  # rollup rows written
    rolled_until: datetime | None


def hour_of(column: Any, dialect: str) -> Any:
    """The UTC hour a stored timestamp falls in, as the same type (SQLite: the text
    SQLAlchemy stores datetimes as)."""
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.timezone(
            literal_column("'UTC'"), func.date_trunc(literal_column("'hour'"), utc)
        )
    return func.substr(column, 1, 13).concat(":00:00.000000")


def marks_of(rows: Iterable[dict[str, Any]]) -> list[Mark]:
    """The (hour, instance) marks for stream rows that are final; values that are not a
    datetime are skipped (the database refuses such a row anyway)."""
    marks = set()
    for values in rows:
        started, instance = values.get("started_at"), values.get("instance_id")
        if isinstance(started, datetime) and isinstance(instance, str):
            marks.add((floor_hour(started), instance))
    return sorted(marks)


def mark_stale(connection: Connection, marks: list[Mark]) -> None:
    """Mark hours stale, in the caller's transaction (sorted: a fixed lock order)."""
    if marks:
        statement = _mark_statement(connection.dialect.name)
        connection.execute(statement, [{"hour": h, "instance_id": i} for h, i in sorted(marks)])


@functools.lru_cache(maxsize=4)
def _mark_statement(dialect: str) -> Any:
    table = RollupMark.__table__
    insert_ = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return insert_.values(version=1).on_conflict_do_update(
        index_elements=["hour", "instance_id"], set_={"version": table.c.version + 1}
    )


def refresh(
    engine: Engine, now: datetime, settle: timedelta = SETTLE, rebuild_since: Range | None = None
) -> Refreshed:
    """Roll up the hours up to `now - settle` not rolled up yet, and recompute stale ones.
    `rebuild_since`: first mark every hour of that range that has streams stale."""
    target = floor_hour(now - settle)
    hours = rows = 0
    try:
        if rebuild_since is not None:
            with engine.begin() as connection:
                _mark_every_hour(connection, rebuild_since)
        while True:  # catch up, one chunk of hours per transaction
            with engine.begin() as connection:
                until = _lock(connection, now)
                span = _next_chunk(connection, until, target)
                if span is None:
                    break
                rows += _recompute(connection, [span], _marks_within(connection, [span]))
                hours += int((span[1] - span[0]) / HOUR)
                _set_until(connection, span[1])
        with engine.begin() as connection:
            until = _lock(connection, now)
            stale = _stale_hours(connection, until)
        for start in range(0, len(stale), STALE_BATCH):  # each stale hour once per refresh
            spans = [(h, h + HOUR) for h in stale[start : start + STALE_BATCH]]
            with engine.begin() as connection:
                _lock(connection, now)
                rows += _recompute(connection, spans, _marks_within(connection, spans))
                hours += len(spans)
        with engine.connect() as connection:
            until = _read_until(connection)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LedgerError(f"cannot refresh the ledger's rollups: {reason}") from None
    return Refreshed(hours, rows, until)


async def keep_rolled_up(engine: Engine, interval: float = INTERVAL_S) -> None:
    """`serve`'s background refresh. Every replica may run it: refreshes take turns on the
    state row, and a refresh with nothing to do is two short transactions."""
    while True:
        await asyncio.sleep(interval)
        try:
            done = await asyncio.to_thread(refresh, engine, datetime.now(UTC))
        except LedgerError as exc:
            log.warning("%s; reports read stream rows meanwhile", exc)
            continue
        if done.hours:
            log.info("rolled up %d hours (%d rows)", done.hours, done.rows)


def _lock(connection: Connection, now: datetime) -> datetime | None:
    """Take the state row (refreshes run one at a time; on SQLite this takes the write lock)
    and read the high-water mark."""
    result = connection.execute(
        update(RollupState).where(RollupState.id == 1).values(refreshed_at=now)
    )
    if result.rowcount != 1:
        raise LedgerError("the ledger has no rollup_state row: run `sidecar db upgrade`")
    return _read_until(connection)


def _read_until(connection: Connection) -> datetime | None:
    value = connection.execute(select(RollupState.rolled_until)).scalar()
    return None if value is None else floor_hour(value)


def _set_until(connection: Connection, until: datetime) -> None:
    connection.execute(update(RollupState).where(RollupState.id == 1).values(rolled_until=until))


def _next_chunk(
    connection: Connection, until: datetime | None, target: datetime
) -> tuple[datetime, datetime] | None:
    if until is None:
        first = connection.execute(select(func.min(Stream.started_at))).scalar()
        if first is None or floor_hour(first) >= target:
            _set_until(connection, target)  # nothing to roll up before the target
            return None
        until = floor_hour(first)
    if until >= target:
        return None
    return until, min(until + CHUNK, target)


def _stale_hours(connection: Connection, until: datetime | None) -> list[datetime]:
    if until is None:
        return []
    pruned = pruned_before(connection)
    if pruned is not None:  # no rows left to recompute those hours from: drop their marks
        connection.execute(delete(RollupMark).where(RollupMark.hour < pruned))
    stale = select(RollupMark.hour).where(RollupMark.hour < until)
    if pruned is not None:
        stale = stale.where(RollupMark.hour >= pruned)
    found = connection.execute(stale.distinct().order_by(RollupMark.hour)).scalars()
    return [floor_hour(h) for h in found]


def pruned_before(connection: Connection) -> datetime | None:
    value = connection.execute(select(RollupState.pruned_before)).scalar()
    return None if value is None else floor_hour(value)


def _marks_within(
    connection: Connection, spans: list[tuple[datetime, datetime]]
) -> list[dict[str, Any]]:
    table = RollupMark.__table__
    found = connection.execute(
        select(table.c.hour, table.c.instance_id, table.c.version).where(
            _within(table.c.hour, spans)
        )
    )
    return [{"h": h, "i": i, "v": v} for h, i, v in found]


def _recompute(
    connection: Connection, spans: list[tuple[datetime, datetime]], seen: list[dict[str, Any]]
) -> int:
    """Replace the rollups of `spans` with sums of their finished streams, then delete the
    marks `seen` (read before this) if nothing changed them since."""
    dialect = connection.dialect.name
    connection.execute(delete(StreamRollup).where(_within(StreamRollup.hour, spans)))
    source = _sums(dialect, spans)
    connection.execute(
        insert(StreamRollup).from_select(list(source.selected_columns.keys()), source)
    )
    # The coarser table, from the finer one just written: a few thousand rows per hour at most.
    connection.execute(delete(ModelRollup).where(_within(ModelRollup.hour, spans)))
    coarse = _coarser(spans)
    connection.execute(
        insert(ModelRollup).from_select(list(coarse.selected_columns.keys()), coarse)
    )
    if seen:
        connection.execute(
            delete(RollupMark).where(
                RollupMark.hour == bindparam("h"),
                RollupMark.instance_id == bindparam("i"),
                RollupMark.version == bindparam("v"),
            ),
            seen,
        )
    # (psycopg reports no row count for INSERT ... SELECT through SQLAlchemy: count them)
    written = select(func.count()).where(_within(StreamRollup.hour, spans))
    return int(connection.execute(written).scalar() or 0)


def _sums(dialect: str, spans: list[tuple[datetime, datetime]]) -> Any:
    s = Stream.__table__.c
    priced = s.price_key.is_not(None)

    def total(value: Any) -> Any:
        return func.coalesce(func.sum(value), 0)

    def unpriced(value: Any) -> Any:
        return total(case((priced, 0), else_=value))

    hour = hour_of(s.started_at, dialect).label("hour")
    keys = [hour, *(s[k] for k in KEYS)]
    return (
        select(
            *keys,
            func.count().label("streams"),
            unpriced(1).label("unpriced_streams"),
            total(s.prompt_tokens).label("prompt_tokens"),
            total(s.generated_tokens).label("generated_tokens"),
            total(s.delivered_tokens).label("delivered_tokens"),
            total(s.wasted_tokens).label("wasted_tokens"),
            (total(s.prompt_cost_nusd) + total(s.generated_cost_nusd)).label("cost_nusd"),
            total(s.wasted_cost_nusd).label("wasted_cost_nusd"),
            unpriced(s.prompt_tokens).label("unpriced_prompt_tokens"),
            unpriced(s.generated_tokens).label("unpriced_generated_tokens"),
            unpriced(s.wasted_tokens).label("unpriced_wasted_tokens"),
        )
        .where(_within(s.started_at, spans), s.outcome.is_not(None))
        .group_by(*keys)
    )


def _coarser(spans: list[tuple[datetime, datetime]]) -> Any:
    fine = StreamRollup.__table__.c
    keys = [fine.hour, *(fine[k] for k in MODEL_KEYS)]
    sums = [func.sum(fine[name]).label(name) for name in SUMS]
    return select(*keys, *sums).where(_within(fine.hour, spans)).group_by(*keys)


def _mark_every_hour(connection: Connection, span: Range) -> None:
    """Mark every hour of `span` that has streams stale (one mark per hour and instance)."""
    s = Stream.__table__.c
    dialect = connection.dialect.name
    start, end = span
    pruned = pruned_before(connection)
    if pruned is not None and (start is None or start < pruned):
        start = pruned  # the rows before it are gone: recomputing would lose those hours
    conditions = []
    if start is not None:
        conditions.append(s.started_at >= floor_hour(start))
    if end is not None:
        conditions.append(s.started_at < end)
    hour = hour_of(s.started_at, dialect)
    found = connection.execute(select(hour, s.instance_id).where(*conditions).distinct())
    mark_stale(connection, [(floor_hour(_as_datetime(h)), i) for h, i in found])


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _within(column: Any, spans: Iterable[tuple[datetime, datetime]]) -> ColumnElement[bool]:
    return or_(*(and_(column >= start, column < end) for start, end in spans))
