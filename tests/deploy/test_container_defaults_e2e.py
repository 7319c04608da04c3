"""`sidecar serve` configured as deploy/ configures it (SIDECAR_* variables, JSON logs, a state
directory, `--migrate`), as a real process: the JSON log lines, the access log on both ingresses,
an unreachable upstream logged, build info, and docs/metrics.md naming every family a scrape
returns (so nothing registered can be left out of the docs)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.wsclient import Client, chat
from tests.support.stack import Process, Stack, sidecar_cmd, start
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _post(stack: Stack, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{stack.http_url}/v1/chat/completions",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=scaled(10)) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def _websocket_stream(stack: Stack) -> list[dict[str, Any]]:
    client = await Client.connect(stack.ws_url)
    await client.generate("w1", chat(8))
    frames = await client.read_until_end("w1")
    await client.close()
    return frames


def _log_lines(proc: Process) -> list[dict[str, Any]]:
    """Every line of the process's output must be a JSON object: nothing else writes there."""
    return [json.loads(line) for line in proc.output().splitlines() if line.strip()]


def _start_serve(stack: Stack, tmp: Path) -> Process:
    env = {
        "SIDECAR_SERVE_LISTEN": f"127.0.0.1:{stack.port}",
        "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{stack.admin_port}",
        "SIDECAR_UPSTREAM": stack.sim_url,
        "SIDECAR_DB": stack.db_url,
        "SIDECAR_STATE_DIR": str(tmp / "state"),
        "SIDECAR_LOG_FORMAT": "json",
        "SIDECAR_INSTANCE_ID": "pod-a",
    }
    proc = start("serve", sidecar_cmd("serve", "--migrate"), tmp, env)
    stack.processes.append(proc)
    stack.serve = proc
    stack._wait_healthy(proc)
    return proc


def test_pod_style_serve_logs_json_and_documents_every_metric(tmp_path: Path) -> None:
    stack = Stack(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")  # not migrated: --migrate does it
    try:
        sim = stack.start_sim()
        serve = _start_serve(stack, tmp_path)
        assert _post(stack, chat(6)) == 200
        frames = asyncio.run(_websocket_stream(stack))
        assert frames[-1]["type"] == "done"
        scrape = stack.metrics_text()
        sim.stop()
        assert _post(stack, chat(6)) >= 500  # the model server is gone
        assert serve.stop(signal.SIGTERM) == 0
    finally:
        stack.stop_all()

    lines = _log_lines(serve)
    assert all({"ts", "level", "logger", "event", "message"} <= set(line) for line in lines)
    events = [line["event"] for line in lines]
    assert "ledger_migrated" in events and "serving" in events
    access = [line for line in lines if line["event"] == "stream_end"]
    by_ingress = {line["ingress"]: line for line in access}
    assert set(by_ingress) >= {"http", "ws"}, access
    ws = by_ingress["ws"]
    assert ws["outcome"] == "completed" and ws["generated_tokens"] == 8
    assert ws["session_id"] and ws["trace_id"] and ws["duration_s"] > 0
    (unreachable,) = [line for line in lines if line["event"] == "upstream_unreachable"]
    assert unreachable["level"] == "warning" and unreachable["upstream"] == stack.sim_url
    assert (tmp_path / "state" / "spool").is_dir(), "the spool lives under the state directory"

    families = {f.name: f for f in text_string_to_metric_families(scrape)}
    (build,) = families["sidecar_build_info"].samples
    assert build.value == 1 and build.labels["version"]
    assert "process_resident_memory_bytes" in families
    documented = METRICS_DOC.read_text()
    # `x_created` families are the start times of documented counters and histograms.
    exposed = {_exposed_name(f.name, f.type) for f in families.values()}
    exposed = {n for n in exposed if not n.endswith("_created")}
    assert len(exposed) >= 30 and "sidecar_auth_failures_total" in exposed
    missing = sorted(n for n in exposed if f"| `{n}` |" not in documented)
    assert not missing, f"on /metrics but not in docs/metrics.md: {missing}"


def _exposed_name(family: str, kind: str) -> str:
    """The parser strips `_total` from counters and `_info` from info metrics; the doc has
    them as exposed."""
    return family + {"counter": "_total", "info": "_info"}.get(kind, "")
