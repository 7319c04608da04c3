"""F4 and F6 end to end against the simulator: a daily budget is not overspent by concurrency,
and output multipliers cannot get around `--max-tokens-limit`.

Before: budget 1,000 and 60 concurrent streams with max_tokens 100 were all admitted (6,060
tokens spent), and `n`, `best_of` or a list of prompts multiplied the limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.wsclient import Client, chat
from tests.security.helpers import rows_until
from tests.support.stack import Stack, running_stack
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e

BUDGET = 1000
STREAMS = 60
MAX_TOKENS = 100
# What one admitted stream reserves: its max_tokens and its prompt estimate ("hello there":
# 11 characters, 3 tokens). A day may end at most one reservation over the budget.
RESERVATION = MAX_TOKENS + 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("budget")
    with running_stack(tmp) as stack:
        # 100 tokens at 100 tokens/s: each stream runs for a second, so all 60 overlap.
        stack.start_sim("--ttft", "0.05", "--tokens-per-second", "100")
        stack.start_serve(
            "--tenant-daily-token-budget", str(BUDGET),
            "--max-tokens-limit", str(MAX_TOKENS),
            "--max-messages-per-second", "0",
        )  # fmt: skip
        yield stack


async def http_streams(stack: Stack, tenant: str) -> list[int]:
    async def one(session: aiohttp.ClientSession) -> int:
        body = {**chat(MAX_TOKENS), "stream": True}
        async with session.post(
            stack.http_url + "/v1/chat/completions",
            json=body,
            headers={"x-sidecar-tenant": tenant},
        ) as response:
            await response.read()
            return response.status

    timeout = aiohttp.ClientTimeout(total=scaled(30))
    connector = aiohttp.TCPConnector(limit=STREAMS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(STREAMS))))


async def ws_streams(stack: Stack, tenant: str) -> list[str]:
    per_connection = 15  # under --max-streams-per-connection (16)
    clients = [
        await Client.connect(stack.ws_url, additional_headers={"X-Sidecar-Tenant": tenant})
        for _ in range(STREAMS // per_connection)
    ]
    for n in range(STREAMS):
        await clients[n % len(clients)].generate(f"s{n}", chat(MAX_TOKENS))
    ends = [(await clients[n % len(clients)].read_until_end(f"s{n}"))[-1] for n in range(STREAMS)]
    for client in clients:
        await client.close()
    return [str(end.get("code", end["type"])) for end in ends]


def spent(stack: Stack, tenant: str) -> tuple[int, list[dict[str, Any]]]:
    rows = rows_until(
        stack.db_url, lambda rows: sum(r["tenant"] == tenant for r in rows) >= STREAMS, 15
    )
    mine = [r for r in rows if r["tenant"] == tenant]
    assert len(mine) == STREAMS
    charged = [r for r in mine if r["outcome"] != "rejected"]  # a refusal costs nothing
    return sum(r["prompt_tokens"] + r["generated_tokens"] for r in charged), mine


def test_concurrent_http_streams_do_not_overspend(stack: Stack) -> None:
    statuses = asyncio.run(http_streams(stack, "http-tenant"))
    total, rows = spent(stack, "http-tenant")
    admitted = [r for r in rows if r["outcome"] == "completed"]
    assert statuses.count(200) == len(admitted) and 0 < len(admitted) < STREAMS
    assert statuses.count(429) == STREAMS - len(admitted)
    assert {r["error_code"] for r in rows if r["outcome"] == "rejected"} == {"budget_exhausted"}
    assert total <= BUDGET - 1 + RESERVATION, total


def test_concurrent_websocket_streams_do_not_overspend(stack: Stack) -> None:
    ends = asyncio.run(ws_streams(stack, "ws-tenant"))
    total, _rows = spent(stack, "ws-tenant")
    assert 0 < ends.count("done") < STREAMS
    assert ends.count("budget_exhausted") == STREAMS - ends.count("done")
    assert total <= BUDGET - 1 + RESERVATION, total


@pytest.mark.parametrize(
    "extra",
    [{"n": 2}, {"best_of": 3}, {"max_completion_tokens": 60, "n": 2}],
    ids=["n", "best_of", "max_completion_tokens"],
)
def test_output_multipliers_count_against_the_limit(stack: Stack, extra: dict[str, Any]) -> None:
    async def run() -> dict[str, Any]:
        client = await Client.connect(stack.ws_url, additional_headers={"X-Sidecar-Tenant": "m"})
        await client.generate("x", {**chat(MAX_TOKENS), **extra})
        frame = await client.next("x")
        await client.close()
        return frame

    frame = asyncio.run(run())
    assert frame["type"] == "error" and frame["code"] == "max_tokens_exceeded", frame


def test_a_list_of_prompts_counts_against_the_limit(stack: Stack) -> None:
    async def run() -> tuple[int, dict[str, Any]]:
        body = {"model": "sim-small", "prompt": ["a", "b"], "max_tokens": 60}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                stack.http_url + "/v1/completions", json=body, headers={"x-sidecar-tenant": "p"}
            ) as response,
        ):
            return response.status, json.loads(await response.read())

    status, answer = asyncio.run(run())
    assert status == 400 and answer["error"]["type"] == "max_tokens_exceeded", answer
