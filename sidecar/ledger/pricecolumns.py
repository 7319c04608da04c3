"""A stream's price columns in the ledger: what the recorder writes when a stream ends and what
`sidecar prices backfill` writes later for a row recorded unpriced, computed the same way."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from sidecar.accounting.pricing import Price, cost_of
from sidecar.ledger.models import NANO

PRICE_COLUMNS: Final = (
    "price_key",
    "input_nusd_per_mtok",
    "output_nusd_per_mtok",
    "prompt_cost_nusd",
    "generated_cost_nusd",
    "wasted_cost_nusd",
)


def nano(usd: Decimal) -> int:
    return int(usd * NANO)


def price_columns(
    price: Price | None, prompt: int, generated: int, delivered: int, wasted: int
) -> dict[str, Any]:
    """NULL everywhere without a price: the cost is unknown, never zero."""
    if price is None:
        return dict.fromkeys(PRICE_COLUMNS)
    cost = cost_of(price, prompt, generated, delivered, wasted)
    return {
        "price_key": price.key,
        "input_nusd_per_mtok": nano(price.input_per_mtok),
        "output_nusd_per_mtok": nano(price.output_per_mtok),
        "prompt_cost_nusd": nano(cost.prompt_usd),
        "generated_cost_nusd": nano(cost.generated_usd),
        "wasted_cost_nusd": nano(cost.wasted_usd),
    }
