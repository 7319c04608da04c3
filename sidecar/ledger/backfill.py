"""`sidecar prices backfill`: price the rows that were recorded without a price.

A stream that started before its model's price reached the sidecar is recorded with an unknown
cost. Once the price is in the ledger, this prices those rows at the price in force when each
stream started, exactly as the recorder would have. It never touches a priced row (the update
is conditional on `price_key IS NULL`) nor a running one (its next checkpoint would rewrite
it), and it records who ran it, when, and with which prices in `price_backfills`; each row it
priced points there (`streams.backfill_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from sidecar.errors import ConfigError, LedgerError
from sidecar.ledger.models import PriceBackfill, Stream
from sidecar.ledger.pricecolumns import price_columns
from sidecar.ledger.prices import load_price_book, utc
from sidecar.ledger.rollup import mark_stale, marks_of


@dataclass(frozen=True, slots=True)
class BackfillResult:
    backfill_id: int | None  # None: a dry run, or nothing to price
    streams: int  # rows priced (or that would be, in a dry run)
    still_unpriced: int  # unpriced finished rows left: they started before any price
    price_keys: tuple[str, ...]


def backfill(
    engine: Engine,
    model: str,
    since: datetime | None,
    until: datetime | None,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> BackfillResult:
    book = load_price_book(engine)
    if not any(p.model == model for p in book):
        raise ConfigError(
            f"no price for model {model!r} in the ledger: add one first with "
            f"`sidecar prices set {model} --input ... --output ... --from ...`"
        )
    conditions = [Stream.model == model, Stream.price_key.is_(None), Stream.outcome.is_not(None)]
    if since is not None:
        conditions.append(Stream.started_at >= since)
    if until is not None:
        conditions.append(Stream.started_at < until)
    columns = (
        Stream.id,
        Stream.started_at,
        Stream.prompt_tokens,
        Stream.generated_tokens,
        Stream.delivered_tokens,
        Stream.wasted_tokens,
        Stream.instance_id,
    )
    try:
        with engine.begin() as connection:
            rows = connection.execute(select(*columns).where(*conditions)).all()
            updates: list[dict[str, Any]] = []
            keys: set[str] = set()
            touched: list[dict[str, Any]] = []
            for stream_id, started, prompt, generated, delivered, wasted, instance in rows:
                price = book.price_at(model, utc(started))
                if price is not None:
                    keys.add(price.key)
                    touched.append({"started_at": utc(started), "instance_id": instance})
                    values = price_columns(price, prompt, generated, delivered, wasted)
                    updates.append({"row_id": stream_id, **values})
            left = len(rows) - len(updates)
            if dry_run or not updates:
                return BackfillResult(None, len(updates), left, tuple(sorted(keys)))
            record = {
                "ran_at": now,
                "actor": actor[:200],
                "model": model,
                "since": since,
                "until": until,
                "streams": 0,
                "price_keys": "\n".join(sorted(keys)),
            }
            backfill_id = connection.execute(
                insert(PriceBackfill).values(record).returning(PriceBackfill.id)
            ).scalar_one()
            priced = _apply(connection, updates, backfill_id)
            mark_stale(connection, marks_of(touched))  # their hours' sums change
            connection.execute(
                update(PriceBackfill).where(PriceBackfill.id == backfill_id).values(streams=priced)
            )
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LedgerError(f"cannot backfill prices: {reason}") from None
    return BackfillResult(backfill_id, priced, left + len(updates) - priced, tuple(sorted(keys)))


def _apply(connection: Any, updates: list[dict[str, Any]], backfill_id: int) -> int:
    statement = (
        update(Stream)
        .where(Stream.id == bindparam("row_id"), Stream.price_key.is_(None))
        .values(
            backfill_id=backfill_id,
            **{name: bindparam(name) for name in updates[0] if name != "row_id"},
        )
    )
    priced = 0
    for row in updates:  # one by one: each reports whether it still was unpriced
        priced += connection.execute(statement, row).rowcount
    return priced
