"""`sidecar report`, exact output, on SQLite and PostgreSQL (the same expected text for both)."""

from __future__ import annotations

import json
import random

from click.testing import CliRunner

from sidecar.cli.report import command
from sidecar.errors import ConfigError
from sidecar.ledger.latency import interpolate
from sidecar.ledger.query import ReportQuery
from sidecar.ledger.report import run_report
from tests.ledger.conftest import at, engine_for

HEADER = (
    "streams  prompt_tokens  generated_tokens  delivered_tokens  wasted_tokens  waste_pct"
    "   cost_usd  wasted_cost_usd  unpriced_streams  ttft_p50_s  ttft_p95_s  heartbeat_rtt_p50_s"
)


def report(url: str, *args: str) -> str:
    result = CliRunner().invoke(command, ["--db", url, "--latency", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_table_by_model_and_tenant(report_ledger: str) -> None:
    text = report(report_ledger, "--since", "2026-11-21", "--until", "2026-11-23")
    assert text.splitlines() == [
        "model    tenant  " + HEADER,
        "-------  ------  -------  -------------  ----------------  ----------------  -------------"
        "  ---------  ---------  ---------------  ----------------  ----------  ----------"
        "  -------------------",
        "big      acme          4            500               260               230             30"
        "      11.5%   0.001020         0.000060                 0       0.175       0.285"
        "                0.030",
        # no price at all: unknown, never $0
        "mystery  globex        1             10                10                10              0"
        "       0.0%    unknown          unknown                 1       0.500       0.500"
        "                    -",
        "small    globex        2            100                50                20             30"
        "      60.0%   0.000045         0.000018                 0       0.050       0.050"
        "                0.010",
        "-------  ------  -------  -------------  ----------------  ----------------  -------------"
        "  ---------  ---------  ---------------  ----------------  ----------  ----------"
        "  -------------------",
        # partly priced: the priced part, marked
        "TOTAL                  7            610               320               260             60"
        "      18.8%  ≥0.001065        ≥0.000078                 1       0.175       0.450"
        "                0.020",
        "unknown: no price for any stream of the row; ≥: the priced streams' cost, without the 1"
        " unpriced ones (unpriced_streams).",
    ]


def test_json_keeps_the_design_shape(report_ledger: str) -> None:
    data = json.loads(report(report_ledger, "--since", "2026-11-21", "--format", "json"))
    assert list(data) == ["rows", "totals"]
    assert data["rows"][0] == {
        "model": "big",
        "tenant": "acme",
        "streams": 4,
        "prompt_tokens": 500,
        "generated_tokens": 260,
        "delivered_tokens": 230,
        "wasted_tokens": 30,
        "unpriced_streams": 0,
        "cost_usd": "0.001020",  # 500 × $1/M + 260 × $2/M
        "wasted_cost_usd": "0.000060",
        "ttft_p50_s": 0.175,  # 0.10 0.15 0.20 0.30: halfway between the middle two
        "ttft_p95_s": 0.285,
        "heartbeat_rtt_p50_s": 0.03,  # sessions sA 0.020 and sB 0.040
        "waste_pct": 11.5,
        "cost_partial": False,
    }
    assert data["rows"][1]["cost_usd"] is None  # "mystery" has no price: null, never "0"
    assert data["rows"][1]["wasted_cost_usd"] is None
    assert data["rows"][1]["heartbeat_rtt_p50_s"] is None  # no session, no heartbeat
    assert data["totals"] == {
        "streams": 7,
        "prompt_tokens": 610,
        "generated_tokens": 320,
        "delivered_tokens": 260,
        "wasted_tokens": 60,
        "unpriced_streams": 1,
        "cost_usd": "0.001065",
        "wasted_cost_usd": "0.000078",
        "ttft_p50_s": 0.175,
        "ttft_p95_s": 0.45,
        "heartbeat_rtt_p50_s": 0.02,
        "waste_pct": 18.8,
        "cost_partial": True,  # the priced part; 1 stream unpriced
    }


def test_csv_by_day_without_latency(report_ledger: str) -> None:
    text = report(report_ledger, "--since", "2026-01-01", "--by", "day", "--format", "csv",
                  "--no-latency")  # fmt: skip
    assert text.splitlines() == [
        "day,streams,prompt_tokens,generated_tokens,delivered_tokens,wasted_tokens,waste_pct,"
        "cost_usd,wasted_cost_usd,unpriced_streams,cost_partial,idle",
        "2026-01-01,1,1000,1000,1000,0,0.0,0.003000,0.000000,0,false,false",
        "2026-11-21,2,300,150,120,30,20.0,0.000600,0.000060,0,false,false",
        "2026-11-22,5,310,170,140,30,17.6,0.000465,0.000018,1,true,false",
    ]


def test_csv_by_hour_and_ingress_with_latency(report_ledger: str) -> None:
    text = report(report_ledger, "--since", "2026-11-22", "--by", "hour,ingress", "--format", "csv")
    assert text.splitlines() == [
        "hour,ingress,streams,prompt_tokens,generated_tokens,delivered_tokens,wasted_tokens,"
        "waste_pct,cost_usd,wasted_cost_usd,unpriced_streams,ttft_p50_s,ttft_p95_s,"
        "heartbeat_rtt_p50_s,cost_partial,idle",
        "2026-11-22T09:00,http,1,50,40,10,30,75.0,0.000032,0.000018,0,0.050,0.050,0.010,false,false",
        "2026-11-22T09:00,ws,1,100,80,80,0,0.0,0.000260,0.000000,0,0.200,0.200,0.040,false,false",
        "2026-11-22T10:00,http,1,10,10,10,0,0.0,,,1,0.500,0.500,,false,false",  # unknown: empty
        "2026-11-22T10:00,ws,1,50,10,10,0,0.0,0.000014,0.000000,0,,,,false,false",
        "2026-11-22T11:00,ws,1,100,30,30,0,0.0,0.000160,0.000000,0,0.150,0.150,0.040,false,false",
    ]


def test_csv_by_route(report_ledger: str) -> None:
    text = report(report_ledger, "--since", "2026-11-22", "--by", "route", "--format", "csv")
    assert [line.split(",")[:3] for line in text.splitlines()] == [
        ["route", "streams", "prompt_tokens"],
        ["/v1/chat/completions", "3", "250"],
        ["/v1/messages", "1", "10"],
        ["/v1/responses", "1", "50"],
    ]


def test_by_session_and_outcome(report_ledger: str) -> None:
    data = json.loads(report(report_ledger, "--since", "2026-11-21", "--by", "session,outcome",
                             "--format", "json"))  # fmt: skip
    keys = [
        (r["session"], r["outcome"], r["streams"], r["heartbeat_rtt_p50_s"]) for r in data["rows"]
    ]
    assert keys == [
        ("s6", "completed", 1, None),  # an HTTP request is its own session, not "-"
        ("sA", "client_gone", 1, 0.02),
        ("sA", "completed", 1, 0.02),
        ("sB", "completed", 1, 0.04),
        ("sB", "running", 1, 0.04),
        ("sC", "client_cancelled", 1, 0.01),
        ("sD", "completed", 1, None),
    ]


def test_top_and_order(report_ledger: str) -> None:
    text = report(report_ledger, "--since", "2026-11-21", "--by", "tenant,model", "--top", "1",
                  "--order", "wasted_cost_usd", "--format", "csv", "--no-latency")  # fmt: skip
    assert text.splitlines()[1:] == [
        "acme,big,4,500,260,230,30,11.5,0.001020,0.000060,0,false,false"
    ]
    text = report(report_ledger, "--since", "2026-11-21", "--by", "model", "--order", "ttft_p95_s",
                  "--format", "csv")  # fmt: skip
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == ["mystery", "big", "small"]
    text = report(report_ledger, "--since", "2026-11-21", "--by", "model", "--order", "model",
                  "--top", "2", "--format", "csv")  # fmt: skip
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == ["big", "mystery"]
    # the totals still cover every row
    data = json.loads(report(report_ledger, "--since", "2026-11-21", "--top", "1", "--format",
                             "json"))  # fmt: skip
    assert len(data["rows"]) == 1 and data["totals"]["streams"] == 7


def test_until_and_empty_period(report_ledger: str) -> None:
    text = report(report_ledger, "--since", "2026-11-21", "--until", "2026-11-22", "--by", "model")
    assert text.splitlines()[2].startswith("big          2            300")
    assert report(report_ledger, "--since", "2030-01-01") == "no streams in this period\n"
    data = json.loads(report(report_ledger, "--since", "2030-01-01", "--format", "json"))
    assert data["rows"] == [] and data["totals"]["ttft_p50_s"] is None


def test_bad_options_are_one_line_errors(report_ledger: str) -> None:
    runner = CliRunner()
    bad = runner.invoke(command, ["--db", report_ledger, "--order", "price"])
    assert isinstance(bad.exception, ConfigError)
    assert str(bad.exception).startswith("--order price: choose from model, tenant, streams")
    bad = runner.invoke(command, ["--db", report_ledger, "--top", "0"])
    assert bad.exit_code == 2 and "--top" in bad.output


def test_interpolation_is_postgresqls_percentile_cont(report_ledger: str) -> None:
    from sqlalchemy import text

    values = [0.10, 0.15, 0.20, 0.30, 2.0]
    assert interpolate([], 0.5) is None
    assert interpolate([0.05], 0.95) == 0.05
    assert [interpolate(values, q) for q in (0, 0.25, 0.5, 1)] == [0.10, 0.15, 0.20, 2.0]
    assert interpolate(values, 0.95) == 0.30 + (0.95 * 4 - 3) * (2.0 - 0.30)
    if report_ledger.startswith("postgresql"):  # bit for bit the same as the server's
        rng = random.Random(7)
        sample = sorted(rng.lognormvariate(-1.5, 0.6) for _ in range(101))
        qs = [0.5, 0.95, 0.99, 0.333]
        with engine_for(report_ledger) as engine, engine.connect() as connection:
            got = connection.execute(
                text("SELECT percentile_cont(CAST(:qs AS float8[])) WITHIN GROUP (ORDER BY v) "
                     "FROM unnest(CAST(:vs AS float8[])) AS v"), {"qs": qs, "vs": sample},
            ).scalar()  # fmt: skip
        assert got == [interpolate(sample, q) for q in qs]


def test_library_default_has_no_latency(report_ledger: str) -> None:
    with engine_for(report_ledger) as engine:
        result = run_report(engine, ReportQuery(by=(), since=at(21, 0)))
    assert result["rows"][0]["streams"] == 7
    assert "ttft_p50_s" not in result["totals"]
