"""`sidecar prices backfill` on SQLite and PostgreSQL: prices only what was unpriced, says so."""

from __future__ import annotations

from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import select

from sidecar.accounting.pricing import Price, PriceBook
from sidecar.cli.prices import command
from sidecar.ledger.models import PriceBackfill, Stream
from sidecar.ledger.prices import upsert_prices
from tests.ledger.conftest import at, engine_for, fill, stream

NOV_22 = at(22, 0)
OLD = PriceBook([Price("late", Decimal("1"), Decimal("2"), at(1, 0))])  # some rows were priced
ROWS = [
    stream(1, "late", "acme", "completed", (100, 50, 50), at(22, 9)),  # unpriced: before the price
    stream(2, "late", "acme", "client_gone", (1000, 300, 100), at(22, 10)),  # unpriced
    stream(3, "late", "acme", None, (10, 10, 10), at(22, 10)),  # running: left to the recorder
    stream(4, "late", "acme", "completed", (7, 7, 7), at(22, 11), book=OLD),  # priced: untouched
    stream(5, "other", "acme", "completed", (5, 5, 5), at(22, 11)),  # another model
    stream(6, "late", "acme", "completed", (1, 1, 1), at(20, 0)),  # before every price
]


def rows_by_id(url: str) -> dict[str, dict[str, object]]:
    with engine_for(url) as engine, engine.connect() as connection:
        return {r["id"]: dict(r) for r in connection.execute(select(Stream)).mappings()}


def test_backfill_prices_unpriced_rows_once_and_records_it(empty_ledger: str) -> None:
    with engine_for(empty_ledger) as engine:
        fill(engine, ROWS, [])
        upsert_prices(engine, [Price("late", Decimal("0.20"), Decimal("0.60"), NOV_22)], "set")
    before = rows_by_id(empty_ledger)
    runner = CliRunner()
    args = ["backfill", "--db", empty_ledger, "--model", "late", "--actor", "ops@example"]
    dry = runner.invoke(command, [*args, "--dry-run"])
    assert dry.output.splitlines()[0] == (
        "would price 2 unpriced streams of late at late@2026-11-22T00:00:00+00:00"
    )
    assert rows_by_id(empty_ledger) == before  # a dry run writes nothing
    result = runner.invoke(command, args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "priced 2 unpriced streams of late at late@2026-11-22T00:00:00+00:00 (backfill #1)",
        "1 unpriced streams started before any price of late; add an earlier price to price them",
    ]
    after = rows_by_id(empty_ledger)
    # 100 × $0.20/M + 50 × $0.60/M, as the recorder would have charged it
    assert (after["s1"]["prompt_cost_nusd"], after["s1"]["generated_cost_nusd"]) == (20_000, 30_000)
    assert after["s2"]["wasted_cost_nusd"] == 120_000  # 200 wasted × $0.60/M
    assert after["s1"]["backfill_id"] == after["s2"]["backfill_id"] == 1
    for untouched in ("s3", "s4", "s5", "s6"):
        assert after[untouched] == before[untouched], untouched
    with engine_for(empty_ledger) as engine, engine.connect() as connection:
        (record,) = connection.execute(select(PriceBackfill)).mappings().all()
    assert (record["actor"], record["model"], record["streams"]) == ("ops@example", "late", 2)
    assert record["price_keys"] == "late@2026-11-22T00:00:00+00:00"
    # running it again finds nothing: a priced row is never rewritten
    again = runner.invoke(command, args)
    assert again.output.splitlines()[0] == "priced 0 unpriced streams of late"


def test_backfill_without_a_price_is_a_one_line_error(empty_ledger: str) -> None:
    result = CliRunner().invoke(command, ["backfill", "--db", empty_ledger, "--model", "nope"])
    assert result.exit_code != 0
    assert str(result.exception).startswith("no price for model 'nope' in the ledger: add one")


def test_backfill_respects_the_period(empty_ledger: str) -> None:
    with engine_for(empty_ledger) as engine:
        fill(engine, ROWS, [])
        upsert_prices(engine, [Price("late", Decimal("1"), Decimal("1"), NOV_22)], "set")
    result = CliRunner().invoke(
        command,
        ["backfill", "--db", empty_ledger, "--model", "late", "--since", "2026-11-22T09:30",
         "--until", "2026-11-23"],
    )  # fmt: skip
    assert result.output.startswith("priced 1 unpriced streams"), result.output
    assert rows_by_id(empty_ledger)["s1"]["price_key"] is None
