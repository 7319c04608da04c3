"""Every dashboard query has data when a real Prometheus scrapes a real sidecar under load.

A real `sidecar simulate` and `sidecar serve` run as subprocesses; 30 streams over ~10 s on ten
WebSocket connections (three tenants with `--tenant-top-n 1`, so `other` exists; a priced and an
unpriced model) end completed, cancelled with a `cancel` frame, or abandoned by aborting the
socket. One idle connection stays open throughout so heartbeats keep producing RTT samples.
Prometheus scrapes `/metrics` every second; then each expression of
`sidecar.dashboards.build.all_promql()` must return at least one series with a finite value
(Grafana draws NaN, e.g. a quantile of an empty histogram, as a gap: no data).

Skipped, and why:
* every `rules ...` expression: alert conditions are correctly empty on a healthy sidecar;
* a drift expression only if its gauge has no samples at all (a guard; with
  `--drift-profile fast` and ~10 s of load every drift panel has data and is checked).
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from pathlib import Path

import pytest

from sidecar.dashboards.build import all_promql
from tests.e2e.wsclient import Client, chat
from tests.support.prometheus import PrometheusServer, running_prometheus
from tests.support.stack import REPO, running_stack
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

PRICES = REPO / "sidecar" / "data" / "demo-prices.toml"
MODELS = ("llama-3.1-8b-instruct", "sim-small")  # priced, unpriced
TENANTS = ("acme", "globex", "initech")  # with --tenant-top-n 1, at least one is `other`
DRIFT_GAUGES = ("sidecar_drift_p95_seconds", "sidecar_drift_alert_active")
CONNECTIONS = 10  # three streams each: 30 streams


async def _deltas(client: Client, stream_id: str, count: int) -> None:
    seen = 0
    while seen < count:
        frame = await client.next(stream_id)
        assert frame["type"] in ("start", "delta"), frame
        seen += frame["type"] == "delta"


async def _connection(url: str, n: int) -> None:
    """Completed, cancelled, and a third stream that completes or is abandoned with the socket."""
    await asyncio.sleep(n * 1.0)  # spread the load over ~10 s: drift baselines need history
    headers = {"X-Sidecar-Tenant": TENANTS[n % len(TENANTS)]}
    client = await Client.connect(url, additional_headers=headers)
    model = MODELS[n % len(MODELS)]
    await client.generate("done", chat(20, model))
    await client.generate("stop", chat(300, model))
    await client.generate("third", chat(40 if n % 2 else 300, model))
    assert (await client.read_until_end("done"))[-1]["type"] == "done"
    await _deltas(client, "stop", 3)
    await client.send({"type": "ack", "id": "stop", "seq": 3})
    await client.send({"type": "cancel", "id": "stop"})
    if n % 2:
        assert (await client.read_until_end("third"))[-1]["type"] == "done"
        await client.close()
    else:
        await _deltas(client, "third", 3)
        client.abort()


def _finite(series: list[dict[str, object]]) -> bool:
    for one in series:
        value = one["value"]
        assert isinstance(value, list)
        if math.isfinite(float(value[1])):
            return True
    return False


def _check_dashboards(prom: PrometheusServer) -> tuple[list[str], list[str]]:
    """(empty, skipped): `where` of each expression without data, and of each one skipped."""
    no_drift = {g for g in DRIFT_GAUGES if not prom.query(f"group({g})")}
    empty, skipped = [], []
    for where, expr in all_promql():
        drift_only = "or vector(" not in expr and any(g in expr for g in no_drift)
        if where.startswith("rules ") or drift_only:
            skipped.append(where)
        elif not _finite(prom.query(expr)):
            empty.append(f"{where}: {expr}")
    return empty, skipped


async def _load_and_check(url: str, prom: PrometheusServer) -> tuple[list[str], list[str]]:
    idle = await Client.connect(url, additional_headers={"X-Sidecar-Tenant": TENANTS[0]})
    try:
        await asyncio.wait_for(
            asyncio.gather(*(_connection(url, n) for n in range(CONNECTIONS))), scaled(30)
        )
        # Two scrapes after the last stream ended, so every counter's last increase is seen.
        scrapes = prom.query(f'count_over_time(up{{job="{prom.job}"}}[10m])')
        done = int(float(scrapes[0]["value"][1]))
        await asyncio.to_thread(prom.wait_for_scrapes, done + 2)
        return await asyncio.to_thread(_check_dashboards, prom)
    finally:
        await idle.close()


def test_every_dashboard_query_has_data(tmp_path: Path) -> None:
    started = time.monotonic()
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.02", "--tokens-per-second", "100", "--jitter", "0.3")
        stack.start_serve(
            "--prices",
            str(PRICES),
            "--tenant-top-n",
            "1",  # at most 2 tenant labels for 3 tenants: `other` always has data
            "--heartbeat-interval",
            "0.25",
            "--heartbeat-timeout",
            "5",
            "--drift-profile",
            "fast",  # baselines within seconds, so the drift panels have data too
        )
        with running_prometheus(targets=[f"127.0.0.1:{stack.admin_port}"]) as prom:
            prom.wait_for_targets_up()
            prom.wait_for_scrapes(2)
            # A request that bypasses accounting, for the panel that shows those.
            with urllib.request.urlopen(stack.http_url + "/v1/models", timeout=5) as models:
                assert models.status == 200
            empty, skipped = asyncio.run(_load_and_check(stack.ws_url, prom))
        metrics = stack.metrics_text()
    assert not empty, "dashboard expressions without data:\n" + "\n".join(empty)
    assert all(w.startswith(("rules ", "sidecar-drift ")) for w in skipped), skipped
    assert 'tenant="other"' in metrics and 'outcome="client_gone"' in metrics
    assert 'outcome="client_cancelled"' in metrics and 'outcome="completed"' in metrics
    assert time.monotonic() - started < scaled(60)
