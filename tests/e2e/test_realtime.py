"""Realtime sessions through a real sidecar against the simulator's `/v1/realtime`: the official
`openai` realtime client, a response cancelled, a client that leaves mid-response, an upstream
that is down. Each response is one ledger row, exact against what the simulator did."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.ledger import session_rows, stream_rows
from tests.support.stack import Stack, running_stack
from tests.support.timeouts import scaled

MODEL = "rt-sim"
ITEM: Any = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "Tell me about streaming"}],
}


def tokens(chars: int) -> int:
    return max(1, round(chars / 4))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("realtime")) as stack:
        stack.start_sim("--ttft", "0.02", "--tokens-per-second", "200")
        stack.start_serve("--heartbeat-interval", "0.5", "--heartbeat-timeout", "2")
        yield stack


def rows_of(stack: Stack, session_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + scaled(10)
    while True:
        rows = [
            r
            for r in stream_rows(stack.db_url)
            if r["session_id"] == session_id and r["outcome"] is not None
        ]
        if len(rows) >= count or time.monotonic() > deadline:
            return sorted(rows, key=lambda r: r["started_at"])
        time.sleep(0.05)


def session_of(stack: Stack, request_id: str) -> str:
    """The sidecar's session id of the response the simulator named `request_id`."""
    deadline = time.monotonic() + scaled(10)
    while True:
        found = [r for r in stream_rows(stack.db_url) if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert found, request_id
            return str(found[0]["session_id"])
        time.sleep(0.05)


def upstream(stack: Stack, response_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + scaled(5)
    while True:
        done: dict[str, Any] = stack.sim_stats()["by_request"][response_id]
        if done["outcome"] != "active" or time.monotonic() > deadline:
            return done
        time.sleep(0.05)


def test_the_openai_realtime_client_through_the_sidecar(stack: Stack) -> None:
    async def talk() -> tuple[list[str], list[Any]]:
        client = openai.AsyncOpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
        ids, usages = [], []
        async with client.realtime.connect(model=MODEL) as conn:
            await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
            for cap in (4, 6):
                await conn.conversation.item.create(item=ITEM)
                await conn.response.create(response={"max_output_tokens": cap})
                async for event in conn:
                    if event.type == "response.done":
                        ids.append(event.response.id)
                        usages.append(event.response.usage)
                        break
        await client.close()
        return ids, usages

    ids, usages = asyncio.run(talk())
    session_id = session_of(stack, ids[0])
    rows = rows_of(stack, session_id, 2)
    assert [r["request_id"] for r in rows] == ids
    for row, usage, cap in zip(rows, usages, (4, 6), strict=True):
        assert row["ingress"] == "realtime" and row["path"] == "/v1/realtime"
        assert row["outcome"] == "completed" and row["count_source"] == "usage"
        assert (row["prompt_tokens"], row["generated_tokens"]) == (usage.input_tokens, cap)
        assert row["delivered_tokens"] == cap and row["wasted_tokens"] == 0
        done = upstream(stack, row["request_id"])
        assert (done["prompt_tokens"], done["generated"]) == (row["prompt_tokens"], cap)
    deadline = time.monotonic() + scaled(5)
    while True:
        (session,) = [s for s in session_rows(stack.db_url) if s["id"] == session_id]
        if session["ended_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert session["ingress"] == "realtime" and session["streams"] == 2
    assert session["disconnect_reason"] == "client_closed"
    metrics = stack.metrics_text()
    assert 'sidecar_route_streams_total{ingress="realtime",route="realtime"}' in metrics


async def _send(ws: ClientConnection, kind: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": kind, **fields}))


async def _deltas(ws: ClientConnection, count: int) -> str:
    """Read until `count` text deltas arrived; the response's id."""
    seen, response_id = 0, ""
    while seen < count:
        event = json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))
        if event["type"] == "response.output_text.delta":
            seen += 1
            response_id = event["response_id"]
    return response_id


def test_cancel_and_a_client_that_leaves_mid_response(stack: Stack) -> None:
    async def talk() -> tuple[str, str]:
        ws = await connect(stack.ws_url.replace("/v1/stream", f"/v1/realtime?model={MODEL}"))
        await ws.recv()  # session.created
        await _send(ws, "conversation.item.create", item=ITEM)
        await _send(ws, "response.create", response={"max_output_tokens": 4000})
        cancelled = await _deltas(ws, 3)
        await _send(ws, "response.cancel")
        while json.loads(await ws.recv())["type"] != "response.done":
            pass
        await _send(ws, "response.create", response={"max_output_tokens": 4000})
        left = await _deltas(ws, 3)
        ws.transport.abort()  # the network goes: no close frame
        return cancelled, left

    cancelled, left = asyncio.run(talk())
    rows = {r["request_id"]: r for r in rows_of(stack, session_of(stack, cancelled), 2)}
    stop = rows[cancelled]
    assert stop["outcome"] == "client_cancelled" and stop["count_source"] == "usage"
    assert stop["generated_tokens"] == upstream(stack, cancelled)["generated"] >= 3
    assert stop["wasted_tokens"] == 0  # everything it generated was relayed before the cancel
    gone = rows[left]
    assert gone["outcome"] == "client_gone" and gone["count_source"] == "counted"
    done = upstream(stack, left)
    assert done["outcome"] == "aborted"  # the sidecar closed the upstream socket
    assert done["generated"] - gone["generated_tokens"] in (0, 1)  # the token on the wire
    assert gone["wasted_tokens"] == gone["generated_tokens"] - gone["delivered_tokens"] >= 0
    # No usage for a response cut short: its prompt is estimated from the conversation so far
    # (the simulator counts the same text).
    assert gone["prompt_tokens"] == done["prompt_tokens"]


def test_an_upstream_that_is_down_closes_the_session(stack: Stack) -> None:
    """Last in the module: it stops the simulator."""

    async def attempt() -> int | None:
        url = f"ws://127.0.0.1:{stack.port}/v1/realtime?model={MODEL}"
        async with connect(url) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), scaled(10))
            return ws.close_code

    stack.processes[0].stop()
    assert asyncio.run(attempt()) == 1011
