"""What `sidecar report` is asked: groups, period and options, as parsed from the command line,
and the SQL expressions that group the ledger's streams (shared by the money, latency and
GPU-hour queries)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import ColumnElement, Date, FromClause, cast, func, literal, literal_column

from sidecar.accounting.hourly import HourlyBook
from sidecar.accounting.pricing import PriceBook
from sidecar.errors import ConfigError

# `route` is the path a stream was relayed on: one of the few the sidecar accounts.
DIMENSIONS: Final = (
    "model", "tenant", "day", "hour", "session", "outcome", "ingress", "route", "instance"
)  # fmt: skip
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
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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
    rollups: bool = True  # False: sum every stream row (the rollups' reference, in tests)


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


def dimension(name: str, dialect: str, src: FromClause) -> Any:
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
        "route": src.c.path,
        "instance": src.c.instance_id,  # the sidecar that relayed the stream
    }[name]


def plain(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:00")
    if isinstance(value, date):
        return value.isoformat()
    return value


def in_period(src: FromClause, query: ReportQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.since is not None:
        conditions.append(src.c.started_at >= query.since)
    if query.until is not None:
        conditions.append(src.c.started_at < query.until)
    return conditions
