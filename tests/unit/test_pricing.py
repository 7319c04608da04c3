from datetime import UTC, datetime
from decimal import Decimal

import pytest

from sidecar.accounting.pricing import Price, PriceBook, cost_of, parse_price_toml
from sidecar.errors import ConfigError

TOML = """
[[price]]
model = "m"
input_per_mtok = "1.00"
output_per_mtok = "2.00"
effective_from = 2026-01-01

[[price]]
model = "m"
input_per_mtok = 0.5
output_per_mtok = 4
effective_from = 2026-06-01T12:00:00Z
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_price_in_force_by_effective_date() -> None:
    book = PriceBook(parse_price_toml(TOML))
    assert book.price_at("m", at("2025-12-31T23:59:59")) is None
    first = book.price_at("m", at("2026-01-01T00:00:00"))
    assert first is not None and first.output_per_mtok == Decimal("2.00")
    before = book.price_at("m", at("2026-06-01T11:59:59"))
    assert before is not None and before.output_per_mtok == Decimal("2.00")
    after = book.price_at("m", at("2026-06-01T12:00:00"))
    assert after is not None and after.output_per_mtok == Decimal("4")
    assert book.price_at("unknown", at("2026-07-01T00:00:00")) is None
    assert len(book) == 2


def test_cost_is_exact_decimal() -> None:
    price = Price("m", Decimal("0.15"), Decimal("0.60"), at("2026-01-01T00:00:00"))
    cost = cost_of(price, prompt=1000, generated=333, delivered=300, wasted=33)
    assert cost.prompt_usd == Decimal("0.000150000")
    assert cost.generated_usd == Decimal("0.000199800")
    assert cost.wasted_usd == Decimal("0.000019800")
    assert cost.total_usd == Decimal("0.000349800")
    assert price.key == "m@2026-01-01T00:00:00+00:00"


def test_a_later_price_for_the_same_instant_replaces_it() -> None:
    book = PriceBook()
    start = at("2026-01-01T00:00:00")
    book.add(Price("m", Decimal(1), Decimal(1), start))
    book.add(Price("m", Decimal(2), Decimal(2), start))
    assert len(book) == 1
    price = book.price_at("m", start)
    assert price is not None and price.input_per_mtok == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[price]\n", "not valid TOML"),
        ('[[price]]\ninput_per_mtok = "1"\noutput_per_mtok = "1"', '"model"'),
        ('[[price]]\nmodel = "m"\ninput_per_mtok = "cheap"\noutput_per_mtok = "1"', "not a number"),
        ('[[price]]\nmodel = "m"\ninput_per_mtok = "-1"\noutput_per_mtok = "1"', "non-negative"),
        (
            '[[price]]\nmodel = "m"\ninput_per_mtok = "1"\noutput_per_mtok = "1"\n'
            'effective_from = "yesterday"',
            "ISO date",
        ),
    ],
)
def test_bad_price_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_price_toml(text, "prices.toml")
