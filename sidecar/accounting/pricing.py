"""Prices with effective dates, and the cost of a stream (DESIGN §4). Money is `Decimal`.

A price applies from its `effective_from` instant until the next price of the same model; a
stream is charged at the price in force when it started, so a change never rewrites history.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sidecar.errors import ConfigError

MILLION = Decimal(1_000_000)
# Ledger precision: nine decimal places of a dollar.
QUANTUM = Decimal("0.000000001")


@dataclass(frozen=True, slots=True)
class Price:
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    effective_from: datetime
    cached_input_per_mtok: Decimal | None = None

    @property
    def key(self) -> str:
        """A stable reference kept on each ledger row."""
        return f"{self.model}@{self.effective_from.isoformat()}"


@dataclass(frozen=True, slots=True)
class Cost:
    prompt_usd: Decimal
    generated_usd: Decimal
    delivered_usd: Decimal
    wasted_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return self.prompt_usd + self.generated_usd


def cost_of(price: Price, prompt: int, generated: int, delivered: int, wasted: int) -> Cost:
    out = price.output_per_mtok
    return Cost(
        prompt_usd=_money(prompt * price.input_per_mtok / MILLION),
        generated_usd=_money(generated * out / MILLION),
        delivered_usd=_money(delivered * out / MILLION),
        wasted_usd=_money(wasted * out / MILLION),
    )


def _money(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM)


class PriceBook:
    """All known prices, looked up by model and instant."""

    def __init__(self, prices: Iterable[Price] = ()) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for price in prices:
            self.add(price)

    def add(self, price: Price) -> None:
        history = self._by_model.setdefault(price.model, [])
        history[:] = [p for p in history if p.effective_from != price.effective_from]
        bisect.insort(history, price, key=lambda p: p.effective_from)

    def price_at(self, model: str, at: datetime) -> Price | None:
        history = self._by_model.get(model)
        if not history:
            return None
        index = bisect.bisect_right(history, at, key=lambda p: p.effective_from)
        return history[index - 1] if index else None

    def __iter__(self) -> Any:
        for model in sorted(self._by_model):
            yield from self._by_model[model]

    def __len__(self) -> int:
        return sum(len(h) for h in self._by_model.values())


def parse_price_toml(text: str, source: str = "price file") -> list[Price]:
    """The per-token prices of a price file, checked (see `pricefile`); a file with only
    `[[hourly]]` tables gives none."""
    from sidecar.accounting.pricefile import parse_price_file

    return list(parse_price_file(text, source).prices)


def parse_instant(value: Any, where: str = "date") -> datetime:
    """A TOML date/datetime or ISO string → an aware UTC datetime."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, date):
        instant = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not an ISO date like 2026-01-31") from None
    else:
        raise ConfigError(f"{where}: expected a date like 2026-01-31")
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
