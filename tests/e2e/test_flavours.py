"""Per-server behaviour (docs: UPSTREAMS): continuous usage for vLLM/SGLang, SGLang's abort
endpoint, and the simulator's run-time latency controls."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.ledger import wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.support.stack import running_stack
from tests.support.timeouts import scaled


async def _cancel_after(url: str, deltas: int) -> None:
    client = await Client.connect(url)
    await client.generate("r", chat(10_000))
    seen = 0
    while seen < deltas:
        seen += (await client.next("r"))["type"] == "delta"
    await client.send({"type": "cancel", "id": "r"})
    await asyncio.sleep(0.2)
    await client.close()


def test_sglang_flavour_calls_abort_request_and_counts_from_usage(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "200")
        stack.start_serve("--upstream-flavour", "sglang")
        asyncio.run(_cancel_after(stack.ws_url, 5))
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "client_cancelled"
        assert row["count_source"] == "usage"  # continuous usage on every chunk
        deadline = time.monotonic() + scaled(5)
        while not stack.sim_stats()["abort_requests"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.sim_stats()["abort_request_ids"] == [row["id"]]


def test_openai_flavour_sends_no_extensions(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "200")
        stack.start_serve()  # flavour openai: the real API rejects unknown fields
        asyncio.run(_cancel_after(stack.ws_url, 5))
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["count_source"] == "counted"  # no usage arrives for a cut stream
        assert stack.sim_stats()["abort_requests"] == 0


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_simulator_latency_controls(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01")
        status, body = _post(
            stack.sim_url + "/sim/latency",
            {"ttft_factor": 2, "tail_fraction": 0.1, "tail_factor": 5},
        )
        assert status == 200
        assert body == {
            "ttft_factor": 2.0,
            "itl_factor": 1.0,
            "tail_fraction": 0.1,
            "tail_factor": 5.0,
        }
        assert _post(stack.sim_url + "/sim/latency", {"ttft_factor": 0})[0] == 400
        assert _post(stack.sim_url + "/sim/latency", {"tail_fraction": 2})[0] == 400
        assert _post(stack.sim_url + "/sim/latency", ["nope"])[0] == 400
