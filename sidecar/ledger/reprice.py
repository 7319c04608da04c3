"""What-if costs for `sidecar report --reprice`: each stream's cost under another price book, at
the price in force when the stream started, rounded per stream exactly as the recorder does
(half to even, to a nano-dollar), in SQL. It only reads. Rounding per stream is why a what-if
report reads stream rows, never the rollups' sums.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import groupby
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, FromClause, and_, case, literal, null, or_, select

from sidecar.accounting.pricing import PriceBook
from sidecar.errors import ConfigError
from sidecar.ledger.models import NANO, Stream

_PER_MTOK: Final = 1_000_000


def _nusd_per_mtok(value: Decimal, model: str) -> int:
    scaled = value * NANO
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"--reprice: price {value} of {model} has more than 9 decimal places")
    return int(scaled)


def repriced(book: PriceBook) -> FromClause:
    """Streams with the reprice book's input and output prices (nano-USD per million tokens)
    in force at each stream's start, NULL where the book has none."""
    input_whens: list[tuple[ColumnElement[bool], Any]] = []
    output_whens: list[tuple[ColumnElement[bool], Any]] = []
    for model, prices in groupby(book, key=lambda p: p.model):
        history = list(prices)
        for n, price in enumerate(history):
            window = [Stream.model == model, Stream.started_at >= price.effective_from]
            if n + 1 < len(history):
                window.append(Stream.started_at < history[n + 1].effective_from)
            condition = and_(*window)
            p_in = _nusd_per_mtok(price.input_per_mtok, model)
            p_out = _nusd_per_mtok(price.output_per_mtok, model)
            input_whens.append((condition, literal(p_in, BigInteger)))
            output_whens.append((condition, literal(p_out, BigInteger)))
    p_in_expr = case(*input_whens, else_=null()) if input_whens else null()
    p_out_expr = case(*output_whens, else_=null()) if output_whens else null()
    columns = [
        Stream.id,
        Stream.instance_id,
        Stream.started_at,
        Stream.model,
        Stream.tenant,
        Stream.session_id,
        Stream.outcome,
        Stream.ingress,
        Stream.path,
        Stream.prompt_tokens,
        Stream.generated_tokens,
        Stream.delivered_tokens,
        Stream.wasted_tokens,
    ]
    return select(*columns, p_in_expr.label("p_in"), p_out_expr.label("p_out")).subquery("repriced")


def half_even_per_mtok(product: Any) -> Any:
    """round(tokens × nano-USD-per-million / 1e6) half to even, in integer SQL arithmetic."""
    quotient, remainder = product // _PER_MTOK, product % _PER_MTOK
    half = _PER_MTOK // 2
    up = or_(remainder > half, and_(remainder == half, quotient % 2 == 1))
    return quotient + case((up, 1), else_=0)
