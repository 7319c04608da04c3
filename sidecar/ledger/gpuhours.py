"""GPU-hour cost in `sidecar report`: the SQL half of `sidecar.accounting.hourly`.

Streams without a per-token price are summed per report group, instance, model and UTC hour
(one query); `allocate` shares each pool-hour's cost among them, and what nobody used becomes
idle rows (`"idle": true`) whose dimensions say `(idle)` — except the time and, for a model's
pool, the model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Final

from sqlalchemy import FromClause, func, select
from sqlalchemy.engine import Connection

from sidecar.accounting.hourly import HourlyBook, Idle, Usage, allocate
from sidecar.errors import ConfigError
from sidecar.ledger.models import HourlyPrice as HourlyRow
from sidecar.ledger.prices import hourly_price_of_row
from sidecar.ledger.query import COUNT_KEYS, ReportQuery, dimension, plain

IDLE: Final = "(idle)"
HOUR_FORMAT: Final = "%Y-%m-%dT%H:00"


def load_hourly(connection: Connection) -> HourlyBook:
    rows = connection.execute(select(HourlyRow)).mappings().all()
    return HourlyBook(hourly_price_of_row(dict(r)) for r in rows)


def add_hourly(
    connection: Connection,
    dialect: str,
    query: ReportQuery,
    src: FromClause,
    book: HourlyBook,
    rows: list[dict[str, Any]],
) -> None:
    """Charge the rows' unpriced streams their share of GPU hours; append idle rows. `src`:
    the period's facts (`facts.py`), rollups included: they keep the unpriced streams' tokens
    per hour, model and instance, all the allocation needs."""
    first = min(p.effective_from for p in book)
    start = max(query.since, first) if query.since is not None else first
    end = query.until or query.now or datetime.now(UTC)
    dims = [dimension(d, dialect, src).label(d) for d in query.by]
    hour = dimension("hour", dialect, src).label("gpu_hour")
    keys = [*dims, src.c.instance_id, src.c.model, hour]
    statement = (
        select(
            *keys,
            func.sum(src.c.unpriced_streams).label("streams"),
            func.sum(src.c.unpriced_prompt_tokens).label("prompt"),
            func.sum(src.c.unpriced_generated_tokens).label("generated"),
            func.sum(src.c.unpriced_wasted_tokens).label("wasted"),
        )
        .where(src.c.unpriced_streams > 0)
        .group_by(*keys)
    )
    usages = [
        Usage(
            group=tuple(plain(d, r[d]) for d in query.by),
            instance=r["instance_id"],
            model=r["model"],
            hour=_hour(r["gpu_hour"]),
            streams=int(r["streams"]),
            prompt_tokens=int(r["prompt"]),
            generated_tokens=int(r["generated"]),
            wasted_tokens=int(r["wasted"]),
        )
        for r in connection.execute(statement).mappings()
    ]
    try:
        allocation = allocate(book, usages, start, end)
    except ValueError as exc:
        raise ConfigError(f"GPU-hour prices: {exc}; give the report a shorter --since") from None
    for row in rows:
        share = allocation.shares.get(tuple(row[d] for d in query.by))
        if share is not None:
            row["cost_usd"] += share.cost
            row["wasted_cost_usd"] += share.wasted_cost
            row["unpriced_streams"] -= share.streams
    rows.extend(_idle_rows(allocation.idle, query.by))


def _hour(value: Any) -> datetime:
    text = str(plain("hour", value))
    return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=UTC)


def _idle_rows(idle: list[Idle], by: tuple[str, ...]) -> list[dict[str, Any]]:
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for item in idle:
        key = tuple(_idle_key(d, item) for d in by)
        row = merged.get(key)
        if row is None:
            row = dict(zip(by, key, strict=True))
            row.update(dict.fromkeys(COUNT_KEYS, 0))
            row.update(cost_usd=Fraction(0), wasted_cost_usd=Fraction(0), idle=True)
            merged[key] = row
        row["cost_usd"] += item.cost
    return list(merged.values())


def _idle_key(dimension: str, item: Idle) -> str:
    if dimension == "day":
        return item.hour.strftime("%Y-%m-%d")
    if dimension == "hour":
        return item.hour.strftime(HOUR_FORMAT)
    scope, target = item.pool
    if dimension == "model" and scope == "model":
        return target
    return IDLE
