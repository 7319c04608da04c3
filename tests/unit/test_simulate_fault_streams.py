"""Each simulated fault, seen on the wire by a raw HTTP client, and counted at /sim/stats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest

from sidecar.simulate.faults import Faults
from tests.support.timeouts import scaled
from tests.unit.sim_server import RawStream, chat, contents, simulator

QUIET = 0.3  # long enough to be sure nothing is coming, short enough for a unit test


def run(test: Any) -> None:
    asyncio.run(asyncio.wait_for(test(), scaled(30)))


def test_a_stall_before_the_first_byte_sends_no_status_line_and_a_leaver_is_aborted() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(3, sim_fault={"stall_before_first_byte": 30})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            assert await raw.read_for(QUIET) == b""
            raw.close()
            stats = await sim.wait_stats(aborted=1, active=0)
            assert (stats["aborted"], stats["active"], stats["tokens_generated"]) == (1, 0, 0)
            assert stats["faults"] == {"stall_before_first_byte": 1}
            # A short stall delays the answer, then it is whole.
            started = time.monotonic()
            body = chat(3, sim_fault={"stall_before_first_byte": 0.3})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_to_end(scaled(5))
            assert time.monotonic() - started >= 0.3
            assert raw.status == 200 and raw.events()[-1] == "[DONE]"
            raw.close()

    run(test)


def test_a_stall_before_the_first_token_sends_the_headers_then_nothing() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(3, sim_fault={"stall_before_first_token": 0.6})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_until(b"\r\n\r\n", scaled(2))
            assert raw.status == 200 and "text/event-stream" in raw.head
            assert raw.events() == [] and b"data:" not in await raw.read_for(QUIET)
            await raw.read_to_end(scaled(5))
            assert contents(raw.events()) == [" the", " stream", " token"]
            raw.close()
            stats = await sim.stats()
            assert stats["completed"] == 1 and stats["faults"] == {"stall_before_first_token": 1}

    run(test)


def test_a_stall_after_n_tokens_pauses_then_goes_on() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(4, sim_fault={"stall_after_tokens": 2, "stall_seconds": 0.5})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_until(b" stream", scaled(2))
            stalled_at = time.monotonic()
            assert contents(raw.events()) == [" the", " stream"]
            await raw.read_until(b" token", scaled(5))
            assert time.monotonic() - stalled_at >= 0.4
            await raw.read_to_end(scaled(5))
            assert len(contents(raw.events())) == 4 and raw.events()[-1] == "[DONE]"
            raw.close()

    run(test)


def test_a_stall_forever_holds_the_connection_until_the_client_leaves() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(10, sim_fault={"stall_after_tokens": 2, "stall_seconds": "forever"})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_until(b" stream", scaled(2))
            assert b"data:" not in await raw.read_for(QUIET)
            assert not raw.eof
            assert (await sim.stats())["active"] == 1
            raw.close()
            stats = await sim.wait_stats(aborted=1)
            assert stats["aborted"] == 1 and stats["tokens_generated"] == 2
            assert stats["faults"] == {"stall_after_tokens": 1}

    run(test)


def test_a_drop_closes_the_connection_with_no_end_marker() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(10, sim_fault={"drop_after_tokens": 3})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_to_end(scaled(5))
            assert raw.eof and not raw.ended_cleanly()
            assert contents(raw.events()) == [" the", " stream", " token"]
            assert "[DONE]" not in raw.events()
            raw.close()
            stats = await sim.stats()
            assert (stats["failed"], stats["tokens_generated"]) == (1, 3)
            assert stats["by_request"] and stats["faults"] == {"drop_after_tokens": 1}
            # The official client sees a broken stream, not a normal end.
            client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIConnectionError):
                stream = await client.chat.completions.create(**chat(10), extra_body=_drop(2))
                async for _ in stream:
                    pass
            await client.close()

    run(test)


def _drop(n: int) -> dict[str, Any]:
    return {"sim_fault": {"drop_after_tokens": n}}


def test_malformed_events_are_inserted_and_the_stream_still_ends() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(5, sim_fault={"malformed_every": 3})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_to_end(scaled(5))
            events = raw.events()
            # role, the, stream, BAD, token, model, BAD, answer, [DONE]
            assert [i for i, e in enumerate(events, 1) if e == "{not json"] == [3, 6]
            assert contents(events) == [" the", " stream", " token", " model", " answer"]
            assert events[-1] == "[DONE]" and raw.ended_cleanly()
            raw.close()
            stats = await sim.stats()
            assert stats["completed"] == 1 and stats["faults"] == {"malformed_every": 2}

    run(test)


def test_errors_answer_503_with_retry_after_and_are_set_at_run_time() -> None:
    async def test() -> None:
        async with simulator() as sim:
            status, faults = await sim.call(
                "POST", "/sim/faults", {"error_rate": 1, "retry_after": 7}
            )
            assert status == 200 and faults == {
                **Faults().as_json(),
                "error_rate": 1.0,
                "retry_after": 7,
            }
            assert (await sim.call("GET", "/sim/faults"))[1] == faults
            client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as raised:
                await client.chat.completions.create(**chat(3, stream=False))
            assert raised.value.status_code == 503
            assert raised.value.response.headers["retry-after"] == "7"
            assert raised.value.body == {
                "message": "simulated model server failure: overloaded, retry later",
                "type": "server_error",
                "param": None,
                "code": 503,
            }
            # One request opts out; then the faults are reset for everyone.
            clean = await client.chat.completions.create(
                **chat(3, stream=False), extra_body={"sim_fault": {"error_rate": 0}}
            )
            assert clean.usage is not None and clean.usage.completion_tokens == 3
            assert (await sim.call("DELETE", "/sim/faults"))[1] == Faults().as_json()
            await client.chat.completions.create(**chat(3, stream=False))
            await client.close()
            stats = await sim.stats()
            assert (stats["requests"], stats["failed"], stats["completed"]) == (3, 1, 2)
            assert stats["faults"] == {"error_rate": 1}

    run(test)


def test_an_error_event_mid_stream_is_what_vllm_sends() -> None:
    async def test() -> None:
        async with simulator() as sim:
            body = chat(5, sim_fault={"error_after_tokens": 2})
            raw = await RawStream.open(sim, "POST", "/v1/chat/completions", body)
            await raw.read_to_end(scaled(5))
            events = raw.events()
            assert contents(events) == [" the", " stream"]
            assert json.loads(events[-2])["error"]["type"] == "server_error"
            assert events[-1] == "[DONE]" and raw.ended_cleanly()
            raw.close()
            client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIError, match="after 2 tokens"):
                stream = await client.chat.completions.create(
                    **chat(5), extra_body={"sim_fault": {"error_after_tokens": 2}}
                )
                async for _ in stream:
                    pass
            await client.close()
            assert (await sim.stats())["failed"] == 2

    run(test)


def test_one_request_s_fault_leaves_the_others_clean() -> None:
    async def test() -> None:
        async with simulator(tokens_per_second=100.0) as sim:
            await sim.call("POST", "/sim/faults", {"malformed_every": 2})
            faulty = chat(20, sim_fault={"drop_after_tokens": 5, "malformed_every": 0})
            clean = chat(20, sim_fault={"malformed_every": None})
            streams = [
                await RawStream.open(sim, "POST", "/v1/chat/completions", body)
                for body in (faulty, clean)
            ]
            await asyncio.gather(*(s.read_to_end(scaled(10)) for s in streams))
            dropped, whole = streams
            assert len(contents(dropped.events())) == 5 and not dropped.ended_cleanly()
            assert "{not json" not in dropped.events()
            assert len(contents(whole.events())) == 20 and whole.events()[-1] == "[DONE]"
            assert "{not json" not in whole.events()
            for stream in streams:
                stream.close()
            stats = await sim.stats()
            assert (stats["completed"], stats["failed"], stats["tokens_generated"]) == (1, 1, 25)

    run(test)


@pytest.mark.parametrize(
    ("route", "body", "content_event"),
    [
        ("/v1/responses", {"input": "hi", "max_output_tokens": 6}, "response.output_text.delta"),
        ("/v1/messages", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6},
         "content_block_delta"),
    ],
)  # fmt: skip
def test_faults_apply_to_every_streaming_route(
    route: str, body: dict[str, Any], content_event: str
) -> None:
    async def test() -> None:
        async with simulator() as sim:
            faults = {"drop_after_tokens": 4, "malformed_every": 5}
            raw = await RawStream.open(
                sim, "POST", route, {"model": "m", "stream": True, **body, "sim_fault": faults}
            )
            await raw.read_to_end(scaled(5))
            deltas = raw.body.decode().count(f'event: {content_event}\ndata: {{"type"')
            assert deltas == 4 and not raw.ended_cleanly()
            assert raw.events().count("{not json") >= 1
            raw.close()
            stats = await sim.stats()
            assert stats["failed"] == 1 and stats["faults"]["drop_after_tokens"] == 1

    run(test)


def test_bad_faults_are_refused_in_one_line() -> None:
    async def test() -> None:
        async with simulator() as sim:
            status, body = await sim.call("POST", "/sim/faults", {"stall_seconds": -1})
            assert status == 400 and "faults.stall_seconds must be" in body["error"]["message"]
            request = chat(3, sim_fault={"drop_after": 1})
            status, body = await sim.call("POST", "/v1/chat/completions", request)
            assert (
                status == 400
                and "sim_fault: unknown fault 'drop_after'" in body["error"]["message"]
            )
            assert (await sim.call("GET", "/sim/faults"))[1] == Faults().as_json()
            assert (await sim.stats())["requests"] == 0

    run(test)
