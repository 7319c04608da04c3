from datetime import UTC, datetime
from decimal import Decimal

import pytest

from sidecar.accounting.pricefile import parse_price_file
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


GOOD = '[[price]]\nmodel = "m"\ninput_per_mtok = "1"\noutput_per_mtok = "1"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[price]\n", "prices.toml is not valid TOML"),
        (
            '[[price]]\ninput_per_mtok = "1"\noutput_per_mtok = "1"\neffective_from = 2026-01-01',
            'prices.toml:1: [[price]] #1: model is required (e.g. model = "llama-3.1-8b-instruct")',
        ),
        (
            GOOD,  # the help says required: no silent 1970-01-01
            "prices.toml:1: [[price]] #1: effective_from is required (e.g. effective_from = "
            "2026-01-01)",
        ),
        (
            GOOD.replace('"1"\noutput', '"cheap"\noutput') + "effective_from = 2026-01-01",
            "prices.toml:3: [[price]] #1: input_per_mtok = 'cheap' is not a number; write a "
            'non-negative number, e.g. input_per_mtok = "0.20"',
        ),
        (
            GOOD.replace('"1"\noutput', '"-1"\noutput') + "effective_from = 2026-01-01",
            "prices.toml:3: [[price]] #1: input_per_mtok = '-1'; write a non-negative number",
        ),
        (
            GOOD + 'effective_from = "yesterday"',
            "prices.toml:5: [[price]] #1: effective_from: 'yesterday' is not an ISO date",
        ),
        (
            GOOD + "effective_from = 2026-01-01\noutput_per_mtk = 2\n",
            "prices.toml:6: [[price]] #1: unknown key 'output_per_mtk'; did you mean "
            "output_per_mtok?",
        ),
        (
            GOOD.replace("[[price]]", "[[prices]]") + "effective_from = 2026-01-01",
            "prices.toml:1: unknown table or key 'prices'; did you mean [[price]]?",
        ),
        ("# nothing\n", "prices.toml: no [[price]] or [[hourly]] tables; nothing to import"),
        (
            GOOD + "effective_from = 2026-01-01\n" + GOOD + "effective_from = 2026-01-01\n",
            "prices.toml:6: [[price]] #2 repeats m@2026-01-01T00:00:00+00:00",
        ),
        (
            '[[hourly]]\nusd_per_hour = "2"\neffective_from = 2026-01-01',
            'prices.toml:1: [[hourly]] #1: give exactly one of instance = "gpu-node-1"',
        ),
        (
            '[[hourly]]\nmodel = "m"\nusd_per_hour = "2"\neffective_from = 2026-01-01T10:30:00Z',
            "prices.toml:4: [[hourly]] #1: an hourly price starts on a whole hour, e.g. "
            "2026-01-01T10:00:00Z",
        ),
        (
            '[[hourly]]\nmodel = "m"\nusd_per_hour = "2"\neffective_from = 2026-01-01\n'
            "capacity_tokens_per_hour = 1.5",
            "prices.toml:5: [[hourly]] #1: expected a positive whole number of tokens",
        ),
    ],
)
def test_bad_price_files_say_where_and_how_to_fix(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_price_file(text, "prices.toml")
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_hourly_prices_parse_exactly() -> None:
    text = (
        '[[hourly]]\ninstance = "gpu-1"\nusd_per_hour = "2.40"\n'
        "effective_from = 2026-01-01T00:00:00Z\ncapacity_tokens_per_hour = 9000000\n"
        'prompt_weight = "0.25"\n'
    )
    (hourly,) = parse_price_file(text, "p.toml").hourly
    assert hourly.pool == ("instance", "gpu-1")
    assert hourly.usd_per_hour == Decimal("2.40") and hourly.prompt_weight == Decimal("0.25")
    assert hourly.capacity_tokens_per_hour == 9_000_000
    assert parse_price_toml(text) == []  # only per-token prices come back from the old reader
