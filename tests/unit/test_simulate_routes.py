"""Every route of the simulator through the official clients, with exact token counts.

Prompt tokens are characters / 4 (see sidecar/simulate/prompt.py); output tokens are the
request's cap under the default `--output-tokens max`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest

from tests.support.timeouts import scaled
from tests.unit.sim_server import Sim, simulator

PROMPT = "x" * 40  # 10 tokens


def run(test: Any, **settings: Any) -> None:
    async def main() -> None:
        async with simulator(**settings) as sim:
            await test(sim)

    asyncio.run(asyncio.wait_for(main(), scaled(30)))


def oai(sim: Sim) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)


def test_models_lists_the_served_models() -> None:
    async def test(sim: Sim) -> None:
        async with oai(sim) as client:
            models = [m async for m in client.models.list()]
            assert [(m.id, m.object, m.owned_by) for m in models] == [
                ("llama-sim", "model", "sidecar-simulate"),
                ("embed-sim", "model", "sidecar-simulate"),
            ]
            assert (await client.models.retrieve("embed-sim")).id == "embed-sim"
            with pytest.raises(openai.NotFoundError):
                await client.models.retrieve("nope")

    run(test, served_models=("llama-sim", "embed-sim"))


def test_responses_stream_and_whole_through_the_openai_client() -> None:
    async def test(sim: Sim) -> None:
        async with oai(sim) as client:
            stream = await client.responses.create(
                model="m", input=PROMPT, instructions="abcd", max_output_tokens=7, stream=True
            )
            events = [event async for event in stream]
            deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
            assert len(deltas) == 7
            final = events[-1]
            assert final.type == "response.completed"
            assert final.response.output_text == "".join(deltas)
            usage = final.response.usage
            assert usage is not None
            assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 7, 18)
            # The SDK's own accumulator agrees.
            async with client.responses.stream(model="m", input=PROMPT, max_output_tokens=3) as s:
                texts = [e.delta async for e in s if e.type == "response.output_text.delta"]
                response = await s.get_final_response()
            assert response.output_text == "".join(texts) == " the stream token"
            whole = await client.responses.create(model="m", input=PROMPT, max_output_tokens=4)
            assert whole.output_text == " the stream token model"
            assert whole.usage is not None and whole.usage.output_tokens == 4
        stats = await sim.stats()
        assert stats["by_route"] == {"responses": 3} and stats["tokens_generated"] == 14

    run(test)


def test_messages_stream_and_whole_through_the_anthropic_client() -> None:
    async def test(sim: Sim) -> None:
        client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0)
        messages: Any = [{"role": "user", "content": PROMPT}]
        async with client.messages.stream(
            model="claude-sim", system="abcdefgh", messages=messages, max_tokens=6
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == " the stream token model answer sidecar"
        assert final.usage.input_tokens == 12 and final.usage.output_tokens == 6
        assert final.stop_reason == "max_tokens" and final.model == "claude-sim"
        whole = await client.messages.create(model="m", messages=messages, max_tokens=2)
        assert [b.text for b in whole.content if b.type == "text"] == [" the stream"]
        assert whole.usage.input_tokens == 10 and whole.usage.output_tokens == 2
        with pytest.raises(anthropic.APIStatusError) as raised:
            await client.messages.create(
                model="m", messages=messages, max_tokens=2,
                extra_body={"sim_fault": {"error_rate": 1, "retry_after": 3}},
            )  # fmt: skip
        assert raised.value.status_code == 503
        assert raised.value.response.headers["retry-after"] == "3"
        assert raised.value.body == {
            "type": "error",
            "error": {
                "type": "overloaded_error",
                "message": "simulated model server failure: overloaded, retry later",
            },
        }
        with pytest.raises(anthropic.APIStatusError, match="after 1 tokens"):
            async with client.messages.stream(
                model="m", messages=messages, max_tokens=4,
                extra_body={"sim_fault": {"error_after_tokens": 1}},
            ) as stream:  # fmt: skip
                async for _ in stream:
                    pass
        await client.close()

    run(test)


def test_embeddings_through_the_openai_client() -> None:
    async def test(sim: Sim) -> None:
        async with oai(sim) as client:
            # The client asks for base64 by default and decodes it.
            result = await client.embeddings.create(model="embed-sim", input=["x" * 8, "y" * 41])
            assert [len(d.embedding) for d in result.data] == [256, 256]
            assert result.usage.prompt_tokens == result.usage.total_tokens == 2 + 10
            floats = await client.embeddings.create(
                model="embed-sim", input="x" * 8, encoding_format="float", dimensions=32
            )
            assert len(floats.data[0].embedding) == 32
            same = await client.embeddings.create(model="e", input="x" * 8, encoding_format="float")
            assert same.data[0].embedding == result.data[0].embedding
            with pytest.raises(openai.BadRequestError, match="input must be"):
                await client.embeddings.create(model="embed-sim", input=[])
        stats = await sim.stats()
        assert stats["by_route"] == {"embeddings": 3} and stats["tokens_generated"] == 0
        assert stats["completed"] == 3

    run(test)


def test_chat_and_text_completions_keep_their_usage_options() -> None:
    async def test(sim: Sim) -> None:
        async with oai(sim) as client:
            chunks = [
                chunk
                async for chunk in await client.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": PROMPT}],
                    max_tokens=4,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ]
            usage = chunks[-1].usage
            assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (10, 4)
            assert chunks[-2].choices[0].finish_reason == "length"
            text = await client.completions.create(model="m", prompt=PROMPT, max_tokens=2)
            assert text.choices[0].text == " the stream" and text.usage is not None
            assert text.usage.total_tokens == 12

    run(test)


def test_a_model_that_ends_before_its_cap_says_stop() -> None:
    async def test(sim: Sim) -> None:
        async with oai(sim) as client:
            answer = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=50
            )
            assert answer.choices[0].finish_reason == "stop"
            assert answer.usage is not None and answer.usage.completion_tokens == 3

    run(test, output_tokens="3")
