"""Close what a crashed sidecar left open (DESIGN §4, §5).

A stream row without an outcome is either still running or belongs to a process that died
(SIGKILL, OOM, power). At start-up, before taking traffic, a sidecar closes its own instance's
open rows as `interrupted`. The counts and costs stay as last checkpointed: they are the best
the ledger knows. Rows of other instances (other replicas sharing the database) are not touched.

Replay the local spool before calling this: a spooled final row carries the real outcome, and
because ledger writes are upserts it would overwrite `interrupted` anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from sidecar.errors import LedgerError
from sidecar.ledger.db import redact
from sidecar.ledger.models import Stream
from sidecar.ledger.rollup import mark_stale, marks_of

INTERRUPTED: Final = "interrupted"


def close_interrupted(engine: Engine, instance_id: str, now: datetime | None = None) -> int:
    """Mark `instance_id`'s streams with no outcome as interrupted; returns how many.

    `ended_at` keeps a checkpointed value if there is one, else becomes `now` (the recovery
    time: the latest instant the stream can have ended)."""
    ended = (now or datetime.now(UTC)).astimezone(UTC)
    statement = (
        update(Stream)
        .where(Stream.instance_id == instance_id, Stream.outcome.is_(None))
        .values(outcome=INTERRUPTED, ended_at=func.coalesce(Stream.ended_at, ended))
        .execution_options(synchronize_session=False)
    )
    open_rows = select(Stream.started_at, Stream.instance_id).where(
        Stream.instance_id == instance_id, Stream.outcome.is_(None)
    )
    try:
        with engine.begin() as connection:
            # The rows turn final: their hours' rollups must be recomputed.
            marks = marks_of(dict(r) for r in connection.execute(open_rows).mappings())
            result = connection.execute(statement)
            mark_stale(connection, marks)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(exc).__name__
        raise LedgerError(
            f"cannot close interrupted streams in {redact(str(engine.url))}: {reason}"
        ) from None
    return int(result.rowcount)
