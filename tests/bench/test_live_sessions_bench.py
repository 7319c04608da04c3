"""`python -m bench.live_sessions` runs end to end with tiny parameters and writes its JSON and
its table; the timings themselves are not checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.live_sessions import main

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_polling_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "live.json"
    args = ["--connections", "40", "--streams", "4", "--seconds", "1.5", "--rounds", "2"]
    assert main([*args, "--interval", "0.3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["opened"] == 40
    assert [sorted(r) for r in result["rounds"]] == [["polled", "quiet"]] * 2
    polled = result["summary"]["polled"]
    assert polled["polls"] >= 3 and polled["poll_errors"] == 0 and polled["answer_kib"] > 1
    assert result["summary"]["quiet"]["ttft_p99_ms"] > 0
    assert "| added |" in capsys.readouterr().out
