"""The simulator's realtime WebSocket: a plain websockets client and the openai client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
from websockets.asyncio.client import ClientConnection, connect

from tests.support.timeouts import scaled
from tests.unit.sim_server import Sim, simulator

USER_ITEM = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "x" * 40}],  # 10 tokens
}


def run(test: Any, **settings: Any) -> None:
    async def main() -> None:
        async with simulator(**settings) as sim:
            await test(sim)

    asyncio.run(asyncio.wait_for(main(), scaled(30)))


async def send(ws: ClientConnection, kind: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": kind, **fields}))


async def until(ws: ClientConnection, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read events up to the first of `kind`; returns it and everything before it."""
    seen = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))
        if event["type"] == kind:
            return event, seen
        seen.append(event)


def ws_url(sim: Sim) -> str:
    return f"ws://{sim.host}:{sim.port}/v1/realtime?model=rt-sim"


def test_a_response_streams_text_and_reports_usage() -> None:
    async def test(sim: Sim) -> None:
        async with connect(ws_url(sim)) as ws:
            created, _ = await until(ws, "session.created")
            assert created["session"]["model"] == "rt-sim"
            await send(ws, "session.update", session={"type": "realtime", "instructions": "abcd"})
            updated, _ = await until(ws, "session.updated")
            assert updated["session"]["instructions"] == "abcd"
            await send(ws, "conversation.item.create", item=USER_ITEM)
            await until(ws, "conversation.item.done")
            await send(ws, "response.create", response={"max_output_tokens": 5})
            done, before = await until(ws, "response.done")
            deltas = [e["delta"] for e in before if e["type"] == "response.output_text.delta"]
            assert deltas == [" the", " stream", " token", " model", " answer"]
            assert done["response"]["status"] == "incomplete"  # it reached its cap
            assert done["response"]["usage"] == {
                "total_tokens": 16,
                "input_tokens": 11,
                "output_tokens": 5,
                "input_token_details": {
                    "text_tokens": 11,
                    "audio_tokens": 0,
                    "image_tokens": 0,
                    "cached_tokens": 0,
                },
                "output_token_details": {"text_tokens": 5, "audio_tokens": 0},
            }
            # The answer joins the conversation: the next response's input counts it.
            await send(ws, "response.create", response={"max_output_tokens": 1})
            done, _ = await until(ws, "response.done")
            answer_chars = len(" the stream token model answer")
            assert done["response"]["usage"]["input_tokens"] == round((44 + answer_chars) / 4)
        stats = await sim.wait_stats(active=0)
        assert stats["realtime"] == {"sessions": 1, "active_sessions": 0, "responses": 2}
        assert (stats["completed"], stats["tokens_generated"]) == (2, 6)
        assert stats["by_route"] == {"realtime": 2}

    run(test)


def test_cancel_stops_the_response_and_still_reports_usage() -> None:
    async def test(sim: Sim) -> None:
        async with connect(ws_url(sim)) as ws:
            await send(ws, "conversation.item.create", item=USER_ITEM)
            await send(ws, "response.create")
            await until(ws, "response.output_text.delta")
            await send(ws, "response.create")  # one at a time
            error, _ = await until(ws, "error")
            assert error["error"]["code"] == "conversation_already_has_active_response"
            await send(ws, "response.cancel")
            done, _ = await until(ws, "response.done")
            response = done["response"]
            assert response["status"] == "cancelled"
            assert response["status_details"]["reason"] == "client_cancelled"
            assert 1 <= response["usage"]["output_tokens"] < 64
            await send(ws, "response.cancel")  # nothing to cancel now
            error, _ = await until(ws, "error")
            assert error["error"]["code"] == "response_cancel_not_active"
            await send(ws, "nonsense")
            error, _ = await until(ws, "error")
            assert error["error"]["code"] == "unknown_event"
        stats = await sim.wait_stats(active=0)
        assert stats["aborted"] == 1 and stats["realtime"]["responses"] == 1
        assert stats["tokens_generated"] == response["usage"]["output_tokens"]

    run(test, tokens_per_second=50.0)


def test_a_client_that_closes_mid_response_stops_the_generation() -> None:
    async def test(sim: Sim) -> None:
        async with connect(ws_url(sim)) as ws:
            await send(ws, "conversation.item.create", item=USER_ITEM)
            await send(ws, "response.create", sim_fault={"stall_after_tokens": 2})
            await until(ws, "response.output_text.delta")
            await until(ws, "response.output_text.delta")  # then it stalls, forever
            await asyncio.sleep(0.1)
        stats = await sim.wait_stats(aborted=1, active=0)
        assert (stats["aborted"], stats["active"], stats["tokens_generated"]) == (1, 0, 2)
        assert stats["faults"] == {"stall_after_tokens": 1}
        assert stats["realtime"]["active_sessions"] == 0

    run(test)


def test_a_failing_response_ends_as_failed() -> None:
    async def test(sim: Sim) -> None:
        async with connect(ws_url(sim)) as ws:
            await send(ws, "response.create", sim_fault={"error_rate": 1})
            error, _ = await until(ws, "error")
            assert error["error"]["type"] == "server_error"
            done, _ = await until(ws, "response.done")
            assert done["response"]["status"] == "failed"
            await send(ws, "response.create", sim_fault={"bogus": 1})
            error, _ = await until(ws, "error")
            assert "unknown fault 'bogus'" in error["error"]["message"]
        stats = await sim.wait_stats(active=0)
        assert (stats["failed"], stats["requests"]) == (1, 1)

    run(test)


def test_the_openai_realtime_client_parses_every_event() -> None:
    async def test(sim: Sim) -> None:
        client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
        async with client.realtime.connect(model="rt-sim") as conn:
            await conn.session.update(session={"type": "realtime", "max_output_tokens": 4})
            await conn.conversation.item.create(item=USER_ITEM)  # type: ignore[arg-type]
            await conn.response.create()
            deltas = []
            async for event in conn:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
                if event.type == "response.done":
                    break
        await client.close()
        assert deltas == [" the", " stream", " token", " model"]
        usage = event.response.usage
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (10, 4, 14)

    run(test)
