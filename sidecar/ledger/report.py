"""`sidecar report` queries: group the ledger's streams and sum tokens and money.

Money is summed as integer nano-dollars in SQL and returned as `Decimal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Engine, case, func, literal, select

from sidecar.errors import ConfigError
from sidecar.ledger.models import NANO, Stream

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
CENTS_PRECISION: Final = Decimal("0.000001")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class ReportQuery:
    by: tuple[str, ...] = ("model", "tenant")
    since: datetime | None = None
    until: datetime | None = None


def parse_by(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in parts if p not in DIMENSIONS]
    if unknown:
        raise ConfigError(f"--by {','.join(unknown)}: choose from {', '.join(DIMENSIONS)}")
    return parts


def parse_time(value: str, option: str, now: datetime) -> datetime:
    """`24h`, `7d`, `30m` before `now`, or an ISO date/datetime (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option} {value!r}: use a duration like 24h or 7d, or a date like 2026-01-31"
        ) from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _dimension(name: str, dialect: str) -> Any:
    column = Stream.started_at
    if name in ("day", "hour"):
        if dialect == "postgresql":
            fmt = "YYYY-MM-DD" if name == "day" else 'YYYY-MM-DD"T"HH24:00'
            return func.to_char(func.timezone("UTC", column), fmt)
        if name == "day":
            return func.substr(column, 1, 10)
        return func.substr(column, 1, 10) + literal("T") + func.substr(column, 12, 2) + ":00"
    return {
        "model": Stream.model,
        "tenant": Stream.tenant,
        "session": func.coalesce(Stream.session_id, literal("-")),
        "outcome": func.coalesce(Stream.outcome, literal("running")),
        "ingress": Stream.ingress,
    }[name]


def run_report(engine: Engine, query: ReportQuery) -> dict[str, Any]:
    dims = [_dimension(d, engine.dialect.name).label(d) for d in query.by]
    nusd = func.coalesce(func.sum(Stream.prompt_cost_nusd), 0) + func.coalesce(
        func.sum(Stream.generated_cost_nusd), 0
    )
    measures = [
        func.count().label("streams"),
        func.coalesce(func.sum(Stream.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(Stream.generated_tokens), 0).label("generated_tokens"),
        func.coalesce(func.sum(Stream.delivered_tokens), 0).label("delivered_tokens"),
        func.coalesce(func.sum(Stream.wasted_tokens), 0).label("wasted_tokens"),
        func.sum(case((Stream.price_key.is_(None), 1), else_=0)).label("unpriced_streams"),
        nusd.label("cost_nusd"),
        func.coalesce(func.sum(Stream.wasted_cost_nusd), 0).label("wasted_cost_nusd"),
    ]
    statement = select(*dims, *measures)
    if query.since is not None:
        statement = statement.where(Stream.started_at >= query.since)
    if query.until is not None:
        statement = statement.where(Stream.started_at < query.until)
    if dims:
        statement = statement.group_by(*dims).order_by(*dims)
    with engine.connect() as connection:
        result = connection.execute(statement).mappings().all()
    rows = [_row(dict(r), query.by) for r in result if r["streams"]]
    return {"rows": rows, "totals": _totals(rows)}


def _row(raw: dict[str, Any], by: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {d: raw[d] for d in by}
    for key in COUNT_KEYS:
        row[key] = int(raw[key] or 0)
    row["cost_usd"] = Decimal(int(raw["cost_nusd"])) / NANO
    row["wasted_cost_usd"] = Decimal(int(raw["wasted_cost_nusd"])) / NANO
    return row


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {key: sum(r[key] for r in rows) for key in COUNT_KEYS}
    for key in MONEY_KEYS:
        totals[key] = sum((r[key] for r in rows), Decimal(0))
    return totals


def waste_pct(row: dict[str, Any]) -> Decimal:
    generated = row["generated_tokens"]
    if not generated:
        return Decimal(0)
    wasted = Decimal(int(row["wasted_tokens"]))
    return (wasted * 100 / int(generated)).quantize(Decimal("0.1"))


def money(value: Decimal) -> str:
    return str(value.quantize(CENTS_PRECISION))
