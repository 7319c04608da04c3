"""The bill never lies, end to end: real `sidecar simulate`, `sidecar serve` and `sidecar
report` / `sidecar prices` processes over real sockets, on a SQLite ledger.

Unknown cost stays unknown in every format and on /metrics; a new price reaches a running
sidecar within seconds and `prices backfill` prices what it missed; a bad price or config file
is refused whole; environment variables reach only the command they are named for.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.ledger import stream_rows, wait_for_rows
from tests.support.stack import Stack, running_stack, sidecar_cmd, start
from tests.support.timeouts import scaled

PRICES = """
[[price]]
model = "priced"
input_per_mtok = "1.00"
output_per_mtok = "2.00"
effective_from = 2026-01-01
"""


def ask(stack: Stack, model: str) -> None:
    """One streamed chat completion over HTTP, read to the end."""
    body = {"model": model, "stream": True, "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    request = urllib.request.Request(
        stack.http_url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=scaled(10)) as response:
        assert response.status == 200
        response.read()


def sidecar(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        sidecar_cmd(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=scaled(60),
    )


def report(stack: Stack, *args: str) -> str:
    result = sidecar("report", "--db", stack.db_url, "--since", "1h", *args, cwd=stack.tmp)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_unpriced_model_costs_unknown_never_zero(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "500")
        stack.start_serve("--prices", str(prices))
        for model in ("priced", "mystery", "mystery"):
            ask(stack, model)
        wait_for_rows(stack.db_url, 3)
        metrics = stack.metrics_text()

        data = json.loads(report(stack, "--by", "model", "--format", "json"))
        by_model = {r["model"]: r for r in data["rows"]}
        assert by_model["mystery"]["cost_usd"] is None
        assert by_model["mystery"]["wasted_cost_usd"] is None
        assert by_model["mystery"]["unpriced_streams"] == 2
        assert by_model["priced"]["cost_usd"] not in (None, "0.000000")
        assert data["totals"]["cost_partial"] is True

        rows = list(csv.DictReader(io.StringIO(report(stack, "--by", "model", "--format", "csv"))))
        assert [(r["model"], r["cost_usd"]) for r in rows if r["model"] == "mystery"] == [
            ("mystery", "")
        ]
        table = report(stack, "--by", "model")
        (line,) = [x for x in table.splitlines() if x.startswith("mystery")]
        assert "unknown" in line and "0.000000" not in line
        html = report(stack, "--by", "model", "--format", "html")
        assert "<td>unknown</td>" in html

    cost_samples = [x for x in metrics.splitlines() if x.startswith("sidecar_cost_usd_total{")]
    assert cost_samples, metrics  # the priced model has its samples...
    assert not [x for x in cost_samples if 'model="mystery"' in x]  # ...the unpriced none
    assert any(x.startswith("sidecar_unpriced_streams_total") for x in metrics.splitlines())


def test_a_new_price_applies_within_seconds_and_backfill_prices_what_it_missed(
    tmp_path: Path,
) -> None:
    before_any_price = datetime.now(UTC) - timedelta(minutes=1)
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "500")
        stack.start_serve()
        ask(stack, "late")  # no price yet: recorded unpriced
        wait_for_rows(stack.db_url, 1)

        now = datetime.now(UTC)
        result = sidecar("prices", "set", "late", "--input", "1", "--output", "2", "--from",
                         now.isoformat(), "--db", stack.db_url, cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        time.sleep(scaled(3))  # the case: a stream started 3 s after the price was set
        ask(stack, "late")
        rows = sorted(wait_for_rows(stack.db_url, 2), key=lambda r: r["started_at"])
        assert rows[0]["price_key"] is None
        assert rows[1]["price_key"] == f"late@{now.isoformat()}", rows[1]
        assert rows[1]["generated_cost_nusd"] > 0

        # The first stream started before that price: an earlier one lets backfill price it.
        sidecar("prices", "set", "late", "--input", "1", "--output", "2", "--from",
                before_any_price.isoformat(), "--db", stack.db_url, cwd=tmp_path)  # fmt: skip
        backfilled = sidecar("prices", "backfill", "--model", "late", "--db", stack.db_url,
                             "--actor", "e2e", cwd=tmp_path)  # fmt: skip
        assert backfilled.returncode == 0, backfilled.stderr
        assert backfilled.stdout.startswith("priced 1 unpriced streams of late"), backfilled.stdout
        data = json.loads(report(stack, "--by", "model", "--format", "json"))
        (late,) = data["rows"]
        assert (late["unpriced_streams"], late["cost_partial"]) == (0, False)
        first = next(r for r in stream_rows(stack.db_url) if r["id"] == rows[0]["id"])
        assert first["backfill_id"] == 1 and first["price_key"].startswith("late@")


def test_bad_price_and_config_files_are_refused_whole(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        PRICES + '\n[[price]]\nmodel = "x"\ninput_per_mtok = "1"\noutput_per_mtok = "1"\n'
    )
    typo = tmp_path / "typo.toml"
    typo.write_text(PRICES.replace("[[price]]", "[[prices]]"))
    config = tmp_path / "sidecar.toml"
    config.write_text('[reprot]\nformat = "json"\n')
    with running_stack(tmp_path) as stack:
        for args, message in [
            (["prices", "import", str(bad)], f"error: {bad}:8: [[price]] #2: effective_from is "
             "required (e.g. effective_from = 2026-01-01)"),
            (["prices", "import", str(typo)], f"error: {typo}:2: unknown table or key 'prices'; "
             "did you mean [[price]]?"),
            (["--config", str(config), "report"], f"error: {config}:1: [reprot] is not a sidecar "
             "command; did you mean [report]?"),
        ]:  # fmt: skip
            result = sidecar(*args, "--db", stack.db_url, cwd=tmp_path)
            assert result.returncode == 2, (args, result.stdout)
            assert result.stderr == message + "\n", result.stderr
        listed = sidecar("prices", "list", "--db", stack.db_url, "--format", "json", cwd=tmp_path)
        assert json.loads(listed.stdout) == {"prices": []}  # nothing imported

        serve = start("serve-bad", sidecar_cmd("serve", "--db", stack.db_url, "--prices", str(bad),
                      "--listen", f"127.0.0.1:{stack.port}", "--admin-listen",
                      f"127.0.0.1:{stack.admin_port}"), tmp_path)  # fmt: skip
        assert serve.popen.wait(scaled(30)) == 2
        assert f"{bad}:8: [[price]] #2: effective_from is required" in serve.output()
        assert "Traceback" not in serve.output()


def test_environment_variables_reach_only_their_command(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "500")
        # serve takes its price file from SIDECAR_PRICES alone
        stack.start_serve(env={"SIDECAR_PRICES": str(prices)})
        ask(stack, "priced")
        wait_for_rows(stack.db_url, 1)
        # set for `prices set` and for another command's --format: report must ignore them
        foreign = {"SIDECAR_OUTPUT": "0.60", "SIDECAR_FORMAT": "csv", "SIDECAR_SEED": "1",
                   "SIDECAR_PRICES_SET_OUTPUT": "0.60",
                   "SIDECAR_DRIFT_BACKTEST_FORMAT": "csv"}  # fmt: skip
        args = ("report", "--db", stack.db_url, "--by", "model")
        result = sidecar(*args, cwd=tmp_path, env=foreign)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[2].startswith("priced ")  # a table on stdout
        assert not (tmp_path / "0.60").exists()
        keys = sidecar("keys", "list", "--db", stack.db_url, cwd=tmp_path, env=foreign)
        assert keys.returncode == 0, keys.stderr
        # its own names do reach it (scoped where another command shares the option), flags too
        own = {"SIDECAR_REPORT_FORMAT": "json", "SIDECAR_LATENCY": "true",
               "SIDECAR_REPORT_OUTPUT": str(tmp_path / "out.json")}  # fmt: skip
        result = sidecar(*args, cwd=tmp_path, env=own)
        assert result.returncode == 0, result.stderr
        data = json.loads((tmp_path / "out.json").read_text())
        assert data["rows"][0]["cost_usd"] is not None and "ttft_p50_s" in data["rows"][0]
