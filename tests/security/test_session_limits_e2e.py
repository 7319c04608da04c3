"""Per-request limits inside the session: `max_tokens`, the tenant's daily budget, idle timeout.

The session calls `Edge.admit` before a stream starts, `Edge.charge` when it ends, and checks
the idle timer once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.wsclient import Client, chat
from tests.security.helpers import rows_until, sample
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("limits")
    with running_stack(tmp) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "400")
        stack.start_serve(
            "--max-tokens-limit", "20",
            "--tenant-daily-token-budget", "40",
            "--idle-timeout", "1",
        )  # fmt: skip
        yield stack


def tenant(name: str) -> dict[str, object]:
    return {"additional_headers": {"X-Sidecar-Tenant": name}}


def test_max_tokens_above_the_limit_is_rejected(stack: Stack) -> None:
    async def run() -> dict[str, object]:
        client = await Client.connect(stack.ws_url, **tenant("mt"))
        await client.generate("big", chat(21))
        frame = await client.next("big", timeout=3)
        await client.close()
        return frame

    frame = asyncio.run(run())
    assert frame["type"] == "error" and frame["code"] == "max_tokens_exceeded"
    rows = rows_until(stack.db_url, lambda rows: any(r["request_id"] == "big" for r in rows), 3)
    assert [r["outcome"] for r in rows if r["request_id"] == "big"] == ["rejected"]
    assert sample(stack.metrics_text(), "sidecar_limit_hits_total", limit="max_tokens") == 1


def test_daily_budget_rejects_new_streams_when_spent(stack: Stack) -> None:
    async def run() -> list[dict[str, object]]:
        client = await Client.connect(stack.ws_url, **tenant("budget"))
        ends = []
        for i in range(4):  # 3 prompt + 15 generated tokens each; 40 a day
            await client.generate(f"b{i}", chat(15))
            ends.append((await client.read_until_end(f"b{i}"))[-1])
        await client.close()
        return ends

    ends = asyncio.run(run())
    assert [e["type"] for e in ends[:3]] == ["done", "done", "done"]
    assert ends[3]["code"] == "budget_exhausted"
    assert sample(stack.metrics_text(), "sidecar_limit_hits_total", limit="daily_budget") == 1


def test_idle_connection_is_closed(stack: Stack) -> None:
    async def run() -> int | None:
        client = await Client.connect(stack.ws_url, **tenant("idle"))
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(client.ws.wait_closed(), 4)
        return client.ws.close_code

    assert asyncio.run(run()) == 1000
    assert sample(stack.metrics_text(), "sidecar_limit_hits_total", limit="idle_timeout") == 1
