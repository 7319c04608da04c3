"""Report queries and rendering, exact output, on a real SQLite ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from sidecar.cli.main import cli
from sidecar.ledger import db
from sidecar.ledger.models import Stream
from sidecar.ledger.query import ReportQuery, parse_by, parse_time
from sidecar.ledger.render import render
from sidecar.ledger.report import run_report

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def row(n: int, model: str, tenant: str, outcome: str, gen: int, dlv: int, **kw: object) -> dict:
    values = dict(
        id=f"s{n}", session_id="sess", instance_id="i", request_id=f"r{n}", model=model,
        tenant=tenant, ingress="ws", path="/v1/chat/completions",
        started_at=kw.pop("started_at", datetime(2026, 11, 22, 10, n, tzinfo=UTC)),
        ended_at=None, outcome=outcome, finish_reason=None, error_code=None,
        count_source="usage", prompt_tokens=100, generated_tokens=gen, delivered_tokens=dlv,
        wasted_tokens=gen - dlv, ttft_s=0.1, duration_s=1.0, trace_id=None,
        price_key="k", input_nusd_per_mtok=1_000_000_000, output_nusd_per_mtok=2_000_000_000,
        prompt_cost_nusd=100_000, generated_cost_nusd=gen * 2000,
        wasted_cost_nusd=(gen - dlv) * 2000,
    )  # fmt: skip
    values.update(kw)
    return values


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    rows = [
        row(1, "big", "acme", "completed", 100, 100),
        row(2, "big", "acme", "client_gone", 50, 20),
        row(3, "small", "globex", "client_cancelled", 40, 10),
        row(4, "small", "globex", "completed", 10, 10, price_key=None, prompt_cost_nusd=None,
            generated_cost_nusd=None, wasted_cost_nusd=None),
        row(5, "old", "acme", "completed", 10, 10, started_at=datetime(2026, 1, 1, tzinfo=UTC)),
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(Stream), rows)
    return url


def test_group_by_model_and_tenant(ledger: str) -> None:
    query = ReportQuery(by=("model", "tenant"), since=parse_time("24h", "--since", NOW))
    report = run_report(db.make_engine(ledger), query)
    assert [(r["model"], r["tenant"], r["streams"]) for r in report["rows"]] == [
        ("big", "acme", 2),
        ("small", "globex", 2),
    ]
    big = report["rows"][0]
    assert big["generated_tokens"] == 150 and big["wasted_tokens"] == 30
    assert big["cost_usd"] == Decimal("0.0005")  # 2 × 100k + 150 × 2000 nano-dollars
    assert big["wasted_cost_usd"] == Decimal("0.00006")
    small = report["rows"][1]
    assert small["unpriced_streams"] == 1  # unknown cost is counted, not priced at zero
    assert report["totals"]["streams"] == 4


def test_table_output_exact(ledger: str) -> None:
    query = ReportQuery(by=("model",), since=datetime(2026, 11, 22, tzinfo=UTC))
    text = render(run_report(db.make_engine(ledger), query), ("model",), "table", ())
    assert text == (
        "model  streams  prompt_tokens  generated_tokens  delivered_tokens  wasted_tokens"
        "  waste_pct   cost_usd  wasted_cost_usd  unpriced_streams\n"
        "-----  -------  -------------  ----------------  ----------------  -------------"
        "  ---------  ---------  ---------------  ----------------\n"
        "big          2            200               150               120             30"
        "      20.0%   0.000500         0.000060                 0\n"
        "small        2            200                50                20             30"
        "      60.0%  ≥0.000180        ≥0.000060                 1\n"
        "-----  -------  -------------  ----------------  ----------------  -------------"
        "  ---------  ---------  ---------------  ----------------\n"
        "TOTAL        4            400               200               140             60"
        "      30.0%  ≥0.000680        ≥0.000120                 1\n"
        "unknown: no price for any stream of the row; ≥: the priced streams' cost, without the 1"
        " unpriced ones (unpriced_streams).\n"
    )


def test_json_and_csv_output_exact(ledger: str) -> None:
    query = ReportQuery(by=("outcome",), since=datetime(2026, 11, 22, tzinfo=UTC))
    report = run_report(db.make_engine(ledger), query)
    data = json.loads(render(report, ("outcome",), "json", ()))
    assert data["rows"][0] == {
        "outcome": "client_cancelled",
        "streams": 1,
        "prompt_tokens": 100,
        "generated_tokens": 40,
        "delivered_tokens": 10,
        "wasted_tokens": 30,
        "unpriced_streams": 0,
        "cost_usd": "0.000180",
        "wasted_cost_usd": "0.000060",
        "waste_pct": 75.0,
        "cost_partial": False,
    }
    assert data["totals"]["cost_usd"] == "0.000680"
    assert render(report, ("outcome",), "csv", ()).splitlines() == [
        "outcome,streams,prompt_tokens,generated_tokens,delivered_tokens,wasted_tokens,"
        "waste_pct,cost_usd,wasted_cost_usd,unpriced_streams,cost_partial,idle",
        "client_cancelled,1,100,40,10,30,75.0,0.000180,0.000060,0,false,false",
        "client_gone,1,100,50,20,30,60.0,0.000200,0.000060,0,false,false",
        "completed,2,200,110,110,0,0.0,0.000300,0.000000,1,true,false",
    ]


def test_by_day_and_until(ledger: str) -> None:
    query = ReportQuery(
        by=("day",),
        since=datetime(2025, 1, 1, tzinfo=UTC),
        until=parse_time("2026-11-01", "u", NOW),
    )
    report = run_report(db.make_engine(ledger), query)
    assert [(r["day"], r["streams"]) for r in report["rows"]] == [("2026-01-01", 1)]


def test_cli_report_and_errors(ledger: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--db", ledger, "--since", "3650d", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totals"]["streams"] == 5
    bad = runner.invoke(cli, ["report", "--db", ledger, "--by", "planet"])
    assert bad.exit_code != 0
    assert "--by planet: choose from model, tenant, day" in str(bad.exception or bad.output)


def test_parse_helpers() -> None:
    assert parse_by("model, day") == ("model", "day")
    assert parse_time("90m", "--since", NOW) == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert parse_time("2026-11-01T05:00:00+01:00", "--since", NOW).hour == 4


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "sidecar.db"
    result = CliRunner().invoke(cli, ["report", "--db", f"sqlite:///{missing}"])
    assert result.exit_code != 0
    assert str(result.exception).startswith(f"no ledger at {missing}: pass --db")
    assert not missing.exists()


def test_a_reprice_table_says_it_is_a_what_if(ledger: str, tmp_path: Path) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text(
        '[[price]]\nmodel = "big"\ninput_per_mtok = "1"\noutput_per_mtok = "1"\n'
        "effective_from = 2026-01-01\n"
    )
    args = ["report", "--db", ledger, "--since", "2026-11-22", "--by", "model"]
    result = CliRunner().invoke(cli, [*args, "--reprice", str(prices)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == [
        f"What-if: costs under the prices in {prices}, not the recorded ones (nothing written).",
        "unknown: no price for any stream of the row; ≥: the priced streams' cost, without the 2"
        " unpriced ones (unpriced_streams).",
    ]
    plain = CliRunner().invoke(cli, args)
    assert "What-if" not in plain.output


def test_totals_are_unknown_when_nothing_is_priced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    unpriced = dict(price_key=None, prompt_cost_nusd=None, generated_cost_nusd=None,
                    wasted_cost_nusd=None)  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(Stream), [row(1, "m", "t", "completed", 5, 5, **unpriced)])
    report = run_report(engine, ReportQuery(by=("model",)))
    data = json.loads(render(report, ("model",), "json", ()))
    for part in (data["rows"][0], data["totals"]):
        assert (part["cost_usd"], part["wasted_cost_usd"], part["cost_partial"]) == (
            None, None, False,
        )  # fmt: skip
    assert render(report, ("model",), "csv", ()).splitlines()[1] == (
        "m,1,100,5,5,0,0.0,,,1,false,false"
    )


def test_top_and_order_put_unknown_costs_last(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    unpriced = dict(price_key=None, prompt_cost_nusd=None, generated_cost_nusd=None,
                    wasted_cost_nusd=None)  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(Stream), [
            row(1, "u1", "t", "completed", 5, 5, **unpriced),
            row(2, "cheap", "t", "completed", 5, 5),
            row(3, "u2", "t", "completed", 5, 5, **unpriced),
            row(4, "dear", "t", "completed", 500, 5),
        ])  # fmt: skip
    report = run_report(engine, ReportQuery(by=("model",), top=3))  # ordered by cost_usd
    assert [r["model"] for r in report["rows"]] == ["dear", "cheap", "u1"]
    assert report["totals"]["streams"] == 4


@pytest.mark.parametrize(
    "args", [["report"], ["prices", "list"], ["keys", "list"], ["db", "current"]], ids=" ".join
)
def test_reading_commands_do_not_create_a_missing_ledger(args: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "sidecar.db"
    result = CliRunner().invoke(cli, [*args, "--db", f"sqlite:///{missing}"])
    assert result.exit_code != 0
    assert str(result.exception).startswith(f"no ledger at {missing}")
    assert not missing.exists()
