"""GPU-hour cost in `sidecar report`, on SQLite and PostgreSQL: the documented worked example
(docs/accounting.md) end to end through the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sidecar.accounting.pricefile import parse_price_file
from sidecar.cli.report import command
from sidecar.ledger.prices import import_price_file
from tests.ledger.conftest import at, engine_for, fill, stream

HOURLY = """
[[hourly]]
instance = "gpu-1"
usd_per_hour = "3.60"
capacity_tokens_per_hour = 36000
prompt_weight = "0.25"
effective_from = 2026-11-22T00:00:00Z
"""
GPU_1 = {"instance": "gpu-1"}
STREAMS = [
    stream(1, "llama", "acme", "client_gone", (4_000, 2_000, 1_500), at(22, 10, 5), **GPU_1),
    stream(2, "llama", "globex", "completed", (8_000, 7_000, 7_000), at(22, 10, 20), **GPU_1),
    stream(3, "llama", "acme", "client_gone", (40_000, 30_000, 20_000), at(22, 12, 10),
           instance="gpu-1"),
    stream(4, "llama", "acme", "completed", (10, 10, 10), at(22, 12, 30), instance="elsewhere"),
]  # fmt: skip


def report(url: str, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(
        command,
        ["--db", url, "--since", "2026-11-22T10:00", "--until", "2026-11-22T13:00",
         "--format", "json", *args],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    data: dict[str, object] = json.loads(result.output)
    return data


def test_gpu_hours_are_shared_by_use_and_idle_is_its_own_line(empty_ledger: str) -> None:
    with engine_for(empty_ledger) as engine:
        fill(engine, STREAMS, [])
        import_price_file(engine, parse_price_file(HOURLY, "gpu.toml"), "gpu.toml")
    data = report(empty_ledger, "--by", "tenant")
    money = [
        (r["tenant"], r["streams"], r["cost_usd"], r["wasted_cost_usd"], r["unpriced_streams"],
         r.get("idle", False))
        for r in data["rows"]  # type: ignore[attr-defined]
    ]  # fmt: skip
    assert money == [
        # A $0.30 + C $3.60; wasted A 500 × $0.0001 + C 10,000 × $0.00009
        ("acme", 3, "3.900000", "0.950000", 1, False),  # the stream on "elsewhere" has no price
        ("globex", 1, "0.900000", "0.000000", 0, False),
        ("(idle)", 0, "6.000000", "0.000000", 0, True),  # 10:00 $2.40 unused + 11:00 $3.60
    ]
    totals = data["totals"]
    assert totals["cost_usd"] == "10.800000"  # type: ignore[index]  # three hours at $3.60
    assert totals["idle_cost_usd"] == "6.000000"  # type: ignore[index]
    assert totals["cost_partial"] is True  # type: ignore[index]

    by_hour = report(empty_ledger, "--by", "hour,model")
    idle = [(r["hour"], r["model"], r["cost_usd"]) for r in by_hour["rows"] if r.get("idle")]  # type: ignore[attr-defined]
    assert idle == [
        ("2026-11-22T10:00", "(idle)", "2.400000"),
        ("2026-11-22T11:00", "(idle)", "3.600000"),
    ]


def test_table_says_what_idle_rows_are(empty_ledger: str) -> None:
    with engine_for(empty_ledger) as engine:
        fill(engine, STREAMS[:3], [])
        import_price_file(engine, parse_price_file(HOURLY, "gpu.toml"), "gpu.toml")
    result = CliRunner().invoke(
        command,
        ["--db", empty_ledger, "--since", "2026-11-22T10:00", "--until", "2026-11-22T13:00",
         "--by", "tenant"],
    )  # fmt: skip
    lines = result.output.splitlines()
    assert lines[4].split() == [
        "(idle)",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0%",
        "6.000000",
        "0.000000",
        "0",
    ]
    assert lines[-1] == "(idle) rows: GPU hours paid for that no stream used, $6.000000 in all."


def test_hourly_prices_are_listed_and_exported_for_reimport(
    empty_ledger: str, tmp_path: Path
) -> None:
    from sidecar.cli.prices import command as prices

    file = tmp_path / "gpu.toml"
    file.write_text(HOURLY)
    runner = CliRunner()
    assert runner.invoke(prices, ["import", str(file), "--db", empty_ledger]).exit_code == 0
    listed = json.loads(
        runner.invoke(prices, ["list", "--hourly", "--format", "json", "--db", empty_ledger]).output
    )
    assert listed == {"hourly": [{
        "scope": "instance", "target": "gpu-1", "effective_from": "2026-11-22T00:00:00+00:00",
        "usd_per_hour": "3.60", "capacity_tokens_per_hour": "36000", "prompt_weight": "0.25",
        "source": "gpu.toml",
    }]}  # fmt: skip
    table = runner.invoke(prices, ["list", "--db", empty_ledger]).output
    assert table.endswith("and 1 hourly prices: `sidecar prices list --hourly`\n")
    exported = tmp_path / "exported.toml"
    exported.write_text(
        runner.invoke(prices, ["list", "--format", "toml", "--db", empty_ledger]).output
    )
    again = runner.invoke(
        prices, ["import", str(exported), "--db", empty_ledger, "--source", "gpu.toml"]
    )
    assert again.exit_code == 0, again.output
    assert (
        json.loads(
            runner.invoke(
                prices, ["list", "--hourly", "--format", "json", "--db", empty_ledger]
            ).output
        )
        == listed
    )
