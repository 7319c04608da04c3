from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.drift.cli import command

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _write(path: Path, rows: list[tuple[object, ...]], header: tuple[str, ...]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def aggregated(tmp_path: Path) -> Path:
    """One p95 per minute for 6 h, +30 % from 5 h on (a Prometheus export)."""
    rng = random.Random(3)
    rows = []
    for i in range(360):
        t = T0 + 60 * (i + 1)
        factor = 1.3 if t > T0 + 5 * 3600 else 1.0
        rows.append((f"{t:.0f}", f"{factor * rng.lognormvariate(-1, 0.08):.5f}"))
    return _write(tmp_path / "agg.csv", rows, ("timestamp", "value"))


def test_json_has_exactly_the_documented_keys(aggregated: Path) -> None:
    result = CliRunner().invoke(command, ["backtest", "--csv", str(aggregated), "--format", "json"])
    assert result.exit_code == 0, result.output
    alerts = json.loads(result.stdout)["alerts"]
    assert list(json.loads(result.stdout)) == ["alerts"] and len(alerts) == 1
    alert = alerts[0]
    assert set(alert) == {
        "fired_at",
        "onset",
        "resolved_at",
        "severity",
        "signal",
        "baseline_p95",
        "current_p95",
    }
    assert "2023-11-15T02:55" <= alert["onset"] <= "2023-11-15T03:13:20+00:00"  # step: 03:13:20
    assert "2023-11-15T03:14" <= alert["fired_at"] <= "2023-11-15T03:25"
    assert alert["resolved_at"] is None and alert["signal"] == "ttft"
    assert alert["current_p95"] > 1.1 * alert["baseline_p95"]


def test_table_is_readable(aggregated: Path) -> None:
    result = CliRunner().invoke(command, ["backtest", "--csv", str(aggregated)])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("360 samples, median step 60 s, threshold h=6.92")
    assert lines[1].split() == [
        "fired_at",
        "onset",
        "resolved_at",
        "sev",
        "baseline_p95",
        "current_p95",
    ]
    assert lines[-1] == "1 alert(s)"


def test_threshold_and_floor_flags_change_the_outcome(aggregated: Path) -> None:
    args = ["backtest", "--csv", str(aggregated), "--format", "json"]
    assert json.loads(CliRunner().invoke(command, [*args, "--floor", "1"]).stdout) == {"alerts": []}
    early = json.loads(CliRunner().invoke(command, [*args, "--threshold", "2"]).stdout)["alerts"]
    default = json.loads(CliRunner().invoke(command, args).stdout)["alerts"]
    assert early[0]["fired_at"] < default[0]["fired_at"]
    table = CliRunner().invoke(command, ["backtest", "--csv", str(aggregated), "--threshold", "20"])
    assert "threshold h=20.00" in table.stdout


def test_iso_timestamps_and_raw_samples_that_never_arm(tmp_path: Path) -> None:
    rows = [(f"2023-11-16 18:17:{i % 60:02d}.5", "0.25") for i in range(50)]
    path = _write(tmp_path / "raw.csv", rows, ("timestamp", "value"))
    result = CliRunner().invoke(command, ["backtest", "--csv", str(path)])
    assert result.exit_code == 0
    assert "no alerts" in result.stdout
    assert "never armed" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,value\n1,0.5\n", "no column 'timestamp' (columns: time, value)"),
        ("timestamp,value\n1,abc\n", "row 2: could not convert string to float: 'abc'"),
        ("timestamp,value\nyesterday,0.5\n", "row 2: timestamp 'yesterday' is neither epoch"),
        ("timestamp,value\n", "has no data rows"),
        ("timestamp,value\n1,-1\n", "row 2: value -1.0 is not a finite number >= 0"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = CliRunner().invoke(command, ["backtest", "--csv", str(path)])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(command, ["backtest", "--csv", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_every_command_has_an_example_in_its_help() -> None:
    for name in ["", "backtest"]:
        result = CliRunner().invoke(command, [name, "--help"] if name else ["--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout
