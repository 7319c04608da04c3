"""The relay benchmark harness works end to end: every scenario runs against real processes and
writes well-formed JSON and Markdown. Tiny parameters; the timings themselves are not checked."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.relay.env import Config
from bench.relay.procs import nginx_available
from bench.relay.quota import available as quota_available
from bench.relay.suite import SCENARIOS, run
from tests.support.unavailable import in_ci, service_unavailable

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def tiny(out: Path, nginx: bool) -> Config:
    return replace(
        Config.quick(),
        name="smoke",
        levels=(2,),
        duration=0.4,
        stagger=0.05,
        answer_seconds=0.2,
        cpu_levels=(2,),
        idle_counts=(20,),
        idle_hold=0.3,
        handshake_seconds=0.3,
        handshake_concurrency=4,
        ramp_streams=2,
        ramp_rates=(100.0,),
        ramp_seconds=0.3,
        probes=3,
        capacity_shapes=((2, 100.0, 10),),
        request_levels=(2,),
        request_shapes=(("short", 4, 400.0),),
        request_stagger=0.02,
        nginx=nginx,
        out_dir=out,
    )


def test_quick_path_produces_well_formed_results(tmp_path: Path) -> None:
    nginx = nginx_available()
    if not nginx and in_ci():
        service_unavailable("nginx is not installed at /usr/sbin/nginx (nginx-light)")
    config = tiny(tmp_path, nginx)
    expected_scenarios = set(SCENARIOS)
    if not quota_available():
        if in_ci():
            service_unavailable("no writable cgroup cpu controller for the capacity scenario")
        expected_scenarios.discard("capacity")
        config = replace(config, scenarios=tuple(n for n in config.scenarios if n != "capacity"))
    results = run(config)

    assert results["errors"] == {}
    assert set(results["scenarios"]) == expected_scenarios
    assert json.loads((tmp_path / "relay-smoke.json").read_text())["config"]["name"] == "smoke"
    markdown = (tmp_path / "relay-smoke.md").read_text()
    for heading in ("## Targets", "## WebSocket path", "## HTTP path", "## Rate ramp"):
        assert heading in markdown

    for path, floor in (("ws", "minimal"), ("http", "nginx" if nginx else None)):
        (level,) = results["scenarios"][path]["levels"]
        expected = {"direct", "sidecar"} | ({floor} if floor else set())
        assert set(level["summary"]) == expected
        for variant, row in level["rounds"][0].items():
            assert row["errors"] == 0, (path, variant, row["error_kinds"])
            assert row["tokens"] > 0 and row["requests"] > 0
            assert row["ttft_p50_ms"] > 0 and row["itl_p99_ms"] > 0
        assert level["summary"]["sidecar"]["cpu_us_per_token"] > 0
        assert isinstance(level["summary"]["sidecar"]["added_ttft_p50_ms"], float)

    scenarios = results["scenarios"]
    assert scenarios["ramp"]["steps"] and set(scenarios["ramp"]["max_rate"]) == {
        "sidecar",
        "minimal",
    }
    if "capacity" in scenarios:
        (shape,) = scenarios["capacity"]["shapes"]
        relays = {"sidecar", "sidecar+tracing", "minimal"}
        assert set(shape["summary"]) == relays | {"direct"}
        for name in relays:
            row = shape["summary"][name]
            assert row["errors"] == 0 and row["tokens_per_s_per_core"] > 0, (name, row)
        assert "## Capacity" in markdown
        assert scenarios["capacity"]["otlp_received"]["exports"] > 0  # tracing really was on
        leftovers = [p.name for p in CGROUP_CPU.glob("bench-*")] if CGROUP_CPU.exists() else []
        assert not [name for name in leftovers if name.endswith(f"-{os.getpid()}")]
    (shape,) = scenarios["requests"]["shapes"]
    (level,) = shape["levels"]
    variants = {"sidecar", "sidecar+tracing", "ws sidecar", "ws sidecar+tracing", "ws minimal"}
    assert set(level["summary"]) == variants | {"direct"} | ({"nginx"} if nginx else set())
    for name in variants:
        row = level["summary"][name]
        assert row["cpu_us_per_request"] > 0 and row["total_p50_ms"] >= row["ttft_p50_ms"]
    assert level["summary"]["direct"]["request_rate"] > 0
    assert "## Per request: closed loop" in markdown
    assert scenarios["handshakes"]["summary"]["sidecar"]["handshakes"] > 0
    (idle,) = scenarios["idle"]["counts"]
    assert idle["sidecar"]["opened"] == idle["minimal"]["opened"] == 20
    for probe in scenarios["close"].values():
        assert probe["probes"] == 3 and probe["upstream_not_closed"] == 0
        assert probe["p99_ms"] is not None


def test_cli_rejects_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_per_token_logic_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.relay.pertoken import main as pertoken_main

    assert pertoken_main(["--tokens", "640", "--repeat", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["1", "4", "16"]
    assert all(float(row.split("|")[2]) > 0 for row in rows[1:])


def test_ab_driver_gives_b_alone_the_tracing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import os

    from bench.relay.ab import _b_environment
    from bench.relay.procs import Procs

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    procs = Procs(None)
    try:
        monkeypatch.delenv("SIDECAR_ON_DISCONNECT", raising=False)
        args = argparse.Namespace(
            tracing_b=True, bsp_b="64,500", env_b=["SIDECAR_ON_DISCONNECT=grace"]
        )
        names = ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "SIDECAR_ON_DISCONNECT")
        with _b_environment(procs, args):
            inside = {k: os.environ.get(k) for k in names}
            endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert inside == {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64", "SIDECAR_ON_DISCONNECT": "grace"}
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in os.environ
        assert "SIDECAR_ON_DISCONNECT" not in os.environ
        import urllib.request

        request = urllib.request.Request(endpoint + "/v1/traces", b"\x00", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # the receiver accepts
            assert response.status == 200
    finally:
        procs.close()
