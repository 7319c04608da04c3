"""`sidecar db prune`: delete old stream rows once the rollups hold their bill.

A past month's bill comes from its hourly rollups, so its stream rows can go. Pruning first
brings the rollups up to date, refuses a cut-off the rollups do not cover yet, then moves
`rollup_state.pruned_before` forward before deleting anything: from then on the refresh never
recomputes those hours (it would find no rows) and reports ignore stale marks there. Rows are
deleted a day per transaction, so writers never wait long. A cut-off with a stream still open
before it is refused: its final row would land in an hour that is never recomputed again.
Sessions are deleted once ended before the cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from sidecar.errors import ConfigError, LedgerError
from sidecar.ledger.models import RollupState, Session, Stream
from sidecar.ledger.rollplan import floor_hour
from sidecar.ledger.rollup import pruned_before, refresh

DAY: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Pruned:
    streams: int
    sessions: int


def prune(engine: Engine, before: datetime, now: datetime, dry_run: bool = False) -> Pruned:
    if floor_hour(before) != before:
        raise ConfigError(f"--before {before:%Y-%m-%d %H:%M}: give a whole hour, e.g. a date")
    done = refresh(engine, now)
    if done.rolled_until is None or before > done.rolled_until:
        until = "nothing" if done.rolled_until is None else f"{done.rolled_until:%Y-%m-%d %H:%M}"
        raise ConfigError(
            f"--before {before:%Y-%m-%d %H:%M}: the rollups cover only up to {until} UTC; "
            "prune an earlier period"
        )
    old_streams = [Stream.started_at < before, Stream.outcome.is_not(None)]
    with engine.connect() as connection:
        running = connection.execute(
            select(func.count(), func.min(Stream.started_at)).where(
                Stream.started_at < before, Stream.outcome.is_(None)
            )
        ).one()
    if running[0]:
        # Its final row would land in an hour that is never recomputed: it would be lost.
        raise ConfigError(
            f"--before {before:%Y-%m-%d %H:%M}: {running[0]} streams that started before it "
            f"have no outcome yet (the oldest at {floor_hour(running[1]):%Y-%m-%d %H:00}); "
            "prune before that, or restart their sidecar (--instance-id) so it closes them"
        )
    old_sessions = [Session.ended_at.is_not(None), Session.ended_at < before]
    try:
        with engine.begin() as connection:
            first = connection.execute(select(func.min(Stream.started_at)).where(*old_streams))
            start = first.scalar()
            if dry_run:
                streams = _count(connection, Stream, old_streams)
                return Pruned(streams, _count(connection, Session, old_sessions))
            pruned = pruned_before(connection)
            if pruned is None or pruned < before:
                connection.execute(
                    update(RollupState).where(RollupState.id == 1).values(pruned_before=before)
                )
        streams = 0
        day = before if start is None else floor_hour(start)
        while day < before:  # one day per transaction
            end = min(day + DAY, before)
            with engine.begin() as connection:
                window = [Stream.started_at >= day, Stream.started_at < end]
                result = connection.execute(delete(Stream).where(*old_streams, *window))
                streams += max(result.rowcount, 0)
            day = end
        with engine.begin() as connection:
            sessions = max(connection.execute(delete(Session).where(*old_sessions)).rowcount, 0)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LedgerError(f"cannot prune the ledger: {reason}") from None
    return Pruned(streams, sessions)


def _count(
    connection: Connection, table: type[Stream] | type[Session], where: list[ColumnElement[bool]]
) -> int:
    statement = select(func.count()).select_from(table).where(*where)
    return int(connection.execute(statement).scalar() or 0)
