"""Prices in the ledger, the `sidecar prices` CLI, and repricing, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from sidecar.accounting.pricing import Price
from sidecar.cli.main import cli, main
from sidecar.cli.prices import command
from sidecar.cli.report import command as report_command
from sidecar.errors import ConfigError
from sidecar.ledger import db
from sidecar.ledger.models import Price as PriceRow
from sidecar.ledger.models import Stream
from sidecar.ledger.prices import list_prices, load_price_book, upsert_prices
from tests.ledger.conftest import JAN_1, STREAMS, at, engine_for, fill

PRICE_FILE = """
[[price]]
model = "big"
input_per_mtok = "1.00"
output_per_mtok = "2.00"
effective_from = 2026-01-01

[[price]]
model = "small"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
cached_input_per_mtok = "0.075"
effective_from = 2026-01-01T00:00:00Z
"""


def invoke(*args: str) -> str:
    result = CliRunner().invoke(command, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_cli_round_trip(empty_ledger: str, tmp_path: Path) -> None:
    file = tmp_path / "prices.toml"
    file.write_text(PRICE_FILE)
    assert invoke("import", str(file), "--db", empty_ledger) == f"imported 2 prices from {file}\n"
    assert invoke("set", "big", "--input", "1.25", "--output", "2.500", "--from",
                  "2026-11-22T00:00:00+00:00", "--db", empty_ledger) == (
        "big: 1.25 in / 2.500 out per million tokens from 2026-11-22T00:00:00+00:00\n"
    )  # fmt: skip
    assert invoke("list", "--db", empty_ledger) == (
        "model  effective_from             input_per_mtok  output_per_mtok  cached_input_per_mtok"
        "  source\n"
        "-----  -------------------------  --------------  ---------------  ---------------------"
        "  ------------------\n"
        "big    2026-01-01T00:00:00+00:00            1.00             2.00                      -"
        "  prices.toml\n"
        "big    2026-11-22T00:00:00+00:00            1.25            2.500                      -"
        "  sidecar prices set\n"
        "small  2026-01-01T00:00:00+00:00            0.15             0.60                  0.075"
        "  prices.toml\n"
    )
    assert json.loads(invoke("list", "--db", empty_ledger, "--format", "json"))["prices"][2] == {
        "model": "small",
        "effective_from": "2026-01-01T00:00:00+00:00",
        "input_per_mtok": "0.15",
        "output_per_mtok": "0.60",
        "cached_input_per_mtok": "0.075",
        "source": "prices.toml",
    }
    assert invoke("list", "--db", empty_ledger, "--format", "csv").splitlines()[:2] == [
        "model,effective_from,input_per_mtok,output_per_mtok,cached_input_per_mtok,source",
        "big,2026-01-01T00:00:00+00:00,1.00,2.00,,prices.toml",
    ]
    # toml export imports back unchanged; importing twice replaces, never duplicates
    exported = tmp_path / "exported.toml"
    exported.write_text(invoke("list", "--db", empty_ledger, "--format", "toml"))
    before = invoke("list", "--db", empty_ledger, "--format", "json")
    invoke("import", str(exported), "--db", empty_ledger, "--source", "prices.toml")
    after = json.loads(invoke("list", "--db", empty_ledger, "--format", "json"))
    assert after == {
        "prices": [{**p, "source": "prices.toml"} for p in json.loads(before)["prices"]]
    }
    assert len(after["prices"]) == 3
    with engine_for(empty_ledger) as engine:
        book = load_price_book(engine)
    assert book.price_at("big", at(21, 23)).input_per_mtok == Decimal("1.00")  # type: ignore[union-attr]
    assert book.price_at("big", at(22, 0)).output_per_mtok == Decimal("2.500")  # type: ignore[union-attr]
    assert book.price_at("small", at(22, 0)).cached_input_per_mtok == Decimal("0.075")  # type: ignore[union-attr]
    assert book.price_at("big", datetime(2025, 12, 31, tzinfo=UTC)) is None


def test_empty_list(empty_ledger: str) -> None:
    assert invoke("list", "--db", empty_ledger) == "no prices in this ledger\n"
    assert invoke("list", "--db", empty_ledger, "--format", "json") == '{\n  "prices": []\n}\n'


BAD_INPUT = [
    (["set", "m", "--input", "abc", "--output", "1", "--from", "2026-01-01"],
     "Invalid value for '--input'"),
    (["set", "m", "--input", "1", "--output", "-2", "--from", "2026-01-01"],
     "'-2' must be a non-negative number"),
    (["set", "m", "--input", "1", "--output", "2", "--from", "soon"],
     "error: --from: 'soon' is not an ISO date like 2026-01-31"),
    (["import", "missing.toml"], "error: missing.toml: cannot read (No such file or directory)"),
    (["import", "bad.toml"], "error: bad.toml is not valid TOML"),
    (["import", "negative.toml"],
     "error: negative.toml:3: [[price]] #1: input_per_mtok = '-1'; write a non-negative number"),
]  # fmt: skip


@pytest.fixture
def bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "bad.toml").write_text("[[price]\n")
    (tmp_path / "negative.toml").write_text(
        '[[price]]\nmodel = "m"\ninput_per_mtok = "-1"\noutput_per_mtok = "1"\n'
        "effective_from = 2026-01-01\n"
    )
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    return url


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line(
    args: list[str],
    message: str,
    bad_files: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.add_command(command)  # what cli/main.py's registration does
    monkeypatch.setattr(sys, "argv", ["sidecar", "prices", *args, "--db", bad_files])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len([line for line in stderr.splitlines() if "rror" in line]) == 1, stderr


def test_never_a_traceback_in_a_real_process(bad_files: str) -> None:
    script = (
        "from sidecar.cli.main import cli, main; from sidecar.cli.prices import command; "
        "cli.add_command(command); main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "prices", "import", "negative.toml", "--db", bad_files],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: negative.toml:3: [[price]] #1: input_per_mtok")


def test_library_upsert_and_list(empty_ledger: str) -> None:
    jan = Price("m", Decimal("0.000000001"), Decimal("12345678901234567890.5"), JAN_1)
    with engine_for(empty_ledger) as engine:
        assert upsert_prices(engine, [], "x") == 0
        assert upsert_prices(engine, [jan], "first") == 1
        assert upsert_prices(engine, [jan], "second") == 1  # same key: replaced
        (stored,) = list_prices(engine)
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(PriceRow)).scalar() == 1
    assert stored.source == "second"
    assert stored.price == jan  # exact decimals, UTC instant
    assert str(stored.price.output_per_mtok) == "12345678901234567890.5"


def test_upsert_refuses_what_does_not_fit(empty_ledger: str) -> None:
    with engine_for(empty_ledger) as engine, pytest.raises(ConfigError, match="characters"):
        upsert_prices(engine, [Price("m", Decimal("1E+50"), Decimal(1), JAN_1)], None)


def _ledger_snapshot(url: str) -> list[tuple[object, ...]]:
    with engine_for(url) as engine, engine.connect() as connection:
        rows = connection.execute(select(Stream).order_by(Stream.id)).all()
        prices = connection.execute(select(PriceRow).order_by(PriceRow.id)).all()
    return [tuple(r) for r in rows] + [tuple(p) for p in prices]


def test_price_change_keeps_history_and_reprice_only_reads(
    empty_ledger: str, tmp_path: Path
) -> None:
    with engine_for(empty_ledger) as engine:
        fill(engine, STREAMS, [])
        upsert_prices(engine, [Price("big", Decimal("1.00"), Decimal("2.00"), JAN_1)], "old")
    yesterday = ["--db", empty_ledger, "--since", "2026-11-21", "--until", "2026-11-22",
                 "--by", "model", "--format", "csv", "--no-latency"]  # fmt: skip
    before = CliRunner().invoke(report_command, yesterday).output
    assert before.splitlines()[1] == "big,2,300,150,120,30,20.0,0.000600,0.000060,0,false,false"

    # the price doubles from today on: yesterday's bill does not move
    invoke("set", "big", "--input", "2.00", "--output", "4.00", "--from", "2026-11-22",
           "--db", empty_ledger)  # fmt: skip
    assert CliRunner().invoke(report_command, yesterday).output == before

    # --reprice with the doubled price in force since January recomputes, and writes nothing
    new = tmp_path / "new.toml"
    new.write_text('[[price]]\nmodel = "big"\ninput_per_mtok = "2.00"\noutput_per_mtok = "4.00"\n'
                   "effective_from = 2026-01-01\n")  # fmt: skip
    snapshot = _ledger_snapshot(empty_ledger)
    repriced = CliRunner().invoke(report_command, [*yesterday, "--reprice", str(new)])
    assert repriced.exit_code == 0, repriced.output
    assert (
        repriced.output.splitlines()[1]
        == "big,2,300,150,120,30,20.0,0.001200,0.000120,0,false,false"
    )
    assert _ledger_snapshot(empty_ledger) == snapshot


def test_reprice_with_the_recorded_prices_reproduces_the_recorded_costs(
    report_ledger: str, tmp_path: Path
) -> None:
    """Per-stream rounding (half to even, to a nano-dollar) is the recorder's own."""
    same = tmp_path / "same.toml"
    same.write_text(PRICE_FILE)
    args = ["--db", report_ledger, "--since", "2025-01-01", "--by", "day,model", "--format",
            "json", "--no-latency"]  # fmt: skip
    recorded = CliRunner().invoke(report_command, args).output
    repriced = json.loads(
        CliRunner().invoke(report_command, [*args, "--reprice", str(same)]).output
    )
    assert repriced.pop("notes") == [
        f"What-if: costs under the prices in {same}, not the recorded ones (nothing written)."
    ]
    assert repriced == json.loads(recorded)


def test_reprice_by_effective_date_and_unknown_models(report_ledger: str, tmp_path: Path) -> None:
    # "small" is only priced from 2026-11-22T09:10: stream 4 (09:15) and 5 (10:00) are priced,
    # "big" only until today, after which it is unknown; "mystery" gets a price.
    file = tmp_path / "what-if.toml"
    file.write_text(
        '[[price]]\nmodel = "small"\ninput_per_mtok = "0.000001"\noutput_per_mtok = "1"\n'
        "effective_from = 2026-11-22T09:10:00Z\n"
        '[[price]]\nmodel = "mystery"\ninput_per_mtok = "3"\noutput_per_mtok = "3"\n'
        "effective_from = 2026-11-01\n"
    )
    result = CliRunner().invoke(report_command, ["--db", report_ledger, "--since", "2026-11-21",
        "--by", "model", "--format", "csv", "--no-latency", "--reprice", str(file)])  # fmt: skip
    assert result.output.splitlines()[1:] == [
        "big,4,500,260,230,30,11.5,,,4,false,false",  # no price: unknown, never $0
        "mystery,1,10,10,10,0,0.0,0.000060,0.000000,0,false,false",
        # 100 × 0.000001/M rounds to 0 nano-dollars per stream; 50 × $1/M = 0.00005
        "small,2,100,50,20,30,60.0,0.000050,0.000030,0,false,false",
    ]
    file.write_text('[[price]]\nmodel = "x"\ninput_per_mtok = "0.0000000001"\n'
                    'output_per_mtok = "1"\neffective_from = 2026-01-01\n')  # fmt: skip
    bad = CliRunner().invoke(report_command, ["--db", report_ledger, "--reprice", str(file)])
    assert isinstance(bad.exception, ConfigError)
    assert "more than 9 decimal places" in str(bad.exception)
