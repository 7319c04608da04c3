"""Prices kept in the ledger's `prices` table (DESIGN §4, §5).

Amounts are stored as exact decimal text (`"0.60"` stays `"0.60"`), instants as UTC. A row is
keyed by (model, effective_from): writing the same key again replaces its amounts, so importing
a price file twice is harmless. Rows are never deleted: a new price gets a new effective date,
and history keeps the old one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from sidecar.accounting.hourly import HourlyBook, HourlyPrice
from sidecar.accounting.pricefile import PriceFile
from sidecar.accounting.pricing import Price, PriceBook
from sidecar.errors import ConfigError, LedgerError
from sidecar.ledger.models import HourlyPrice as HourlyRow
from sidecar.ledger.models import Price as PriceRow

MAX_TEXT: Final = 40  # width of the amount columns
MAX_SOURCE: Final = 200
MAX_MODEL: Final = 128


@dataclass(frozen=True, slots=True)
class StoredPrice:
    price: Price
    source: str | None


def utc(instant: datetime) -> datetime:
    """SQLite hands back naive datetimes; every instant in the ledger is UTC."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def list_prices(engine: Engine) -> list[StoredPrice]:
    """Every stored price, by model then effective date."""
    statement = select(PriceRow).order_by(PriceRow.model, PriceRow.effective_from)
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot read prices: {_reason(exc)}") from None
    return [_stored(dict(row)) for row in rows]


def load_price_book(engine: Engine) -> PriceBook:
    """The stored prices as the `PriceBook` the recorder charges with."""
    return PriceBook(stored.price for stored in list_prices(engine))


def upsert_prices(engine: Engine, prices: Iterable[Price], source: str | None) -> int:
    """Insert or replace prices by (model, effective_from); returns how many were written."""
    return import_price_file(engine, PriceFile(tuple(prices), ()), source)


def import_price_file(engine: Engine, file: PriceFile, source: str | None) -> int:
    """Write a checked price file in one transaction (all of it or nothing); returns how many
    prices were written. Same keys replace: (model, effective_from) and, for hourly prices,
    (scope, target, effective_from)."""
    token = [_values(price, source) for price in file.prices]
    hourly = [_hourly_values(price, source) for price in file.hourly]
    token_upsert = _upsert(engine, PriceRow, ("model", "effective_from"))
    hourly_upsert = _upsert(engine, HourlyRow, ("scope", "target", "effective_from"))
    try:
        with engine.begin() as connection:
            for statement, rows in ((token_upsert, token), (hourly_upsert, hourly)):
                for row in rows:  # one statement per row: a file lists few prices
                    connection.execute(statement, row)
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot write prices: {_reason(exc)}") from None
    return len(token) + len(hourly)


def _upsert(engine: Engine, table: Any, keys: tuple[str, ...]) -> Any:
    dialect = engine.dialect.name
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert(table)
    elif dialect == "sqlite":
        insert = sqlite.insert(table)
    else:
        raise LedgerError(f"prices: unsupported database dialect {dialect!r}")
    updates = [c.name for c in table.__table__.columns if c.name != "id" and c.name not in keys]
    return insert.on_conflict_do_update(
        index_elements=list(keys), set_={name: insert.excluded[name] for name in updates}
    )


def list_hourly(engine: Engine) -> list[tuple[HourlyPrice, str | None]]:
    """Every stored hourly price, by pool then effective date, with its source."""
    statement = select(HourlyRow).order_by(
        HourlyRow.scope, HourlyRow.target, HourlyRow.effective_from
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot read hourly prices: {_reason(exc)}") from None
    return [(hourly_price_of_row(dict(row)), row["source"]) for row in rows]


def load_hourly_book(engine: Engine) -> HourlyBook:
    return HourlyBook(price for price, _ in list_hourly(engine))


def _hourly_values(price: HourlyPrice, source: str | None) -> dict[str, Any]:
    if source is not None and len(source) > MAX_SOURCE:
        source = source[: MAX_SOURCE - 1] + "…"
    return {
        "scope": price.scope,
        "target": price.target,
        "usd_per_hour": decimal_text(price.usd_per_hour, "usd_per_hour"),
        "capacity_tokens_per_hour": price.capacity_tokens_per_hour,
        "prompt_weight": decimal_text(price.prompt_weight, "prompt_weight"),
        "effective_from": utc(price.effective_from),
        "source": source,
    }


def hourly_price_of_row(row: dict[str, Any]) -> HourlyPrice:
    where = f"hourly_prices row {row['scope']}:{row['target']}@{row['effective_from']}"
    return HourlyPrice(
        scope="instance" if row["scope"] == "instance" else "model",
        target=row["target"],
        usd_per_hour=_parse(row["usd_per_hour"], where),
        effective_from=utc(row["effective_from"]),
        capacity_tokens_per_hour=row["capacity_tokens_per_hour"],
        prompt_weight=_parse(row["prompt_weight"], where),
    )


def _values(price: Price, source: str | None) -> dict[str, Any]:
    if not price.model or len(price.model) > MAX_MODEL:
        raise ConfigError(f"model name must be 1 to {MAX_MODEL} characters: {price.model!r}")
    if source is not None and len(source) > MAX_SOURCE:
        source = source[: MAX_SOURCE - 1] + "…"
    cached = price.cached_input_per_mtok
    return {
        "model": price.model,
        "input_per_mtok": decimal_text(price.input_per_mtok, "input price"),
        "output_per_mtok": decimal_text(price.output_per_mtok, "output price"),
        "cached_input_per_mtok": None if cached is None else decimal_text(cached, "cached price"),
        "effective_from": utc(price.effective_from),
        "source": source,
    }


def decimal_text(value: Decimal, what: str) -> str:
    """Exact, plain (no exponent) decimal text that fits the column."""
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{what} must be a non-negative number, not {value}")
    text = f"{value:f}"
    if len(text) > MAX_TEXT:
        raise ConfigError(f"{what} {text} has more than {MAX_TEXT} characters")
    return text


def _stored(row: dict[str, Any]) -> StoredPrice:
    where = f"prices row {row['model']}@{row['effective_from']}"
    cached = row["cached_input_per_mtok"]
    price = Price(
        model=row["model"],
        input_per_mtok=_parse(row["input_per_mtok"], where),
        output_per_mtok=_parse(row["output_per_mtok"], where),
        cached_input_per_mtok=None if cached is None else _parse(cached, where),
        effective_from=utc(row["effective_from"]),
    )
    return StoredPrice(price=price, source=row["source"])


def _parse(text: str, where: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise LedgerError(f"{where}: {text!r} is not a decimal number; fix the row") from None


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
