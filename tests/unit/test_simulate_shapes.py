"""The simulator's events and bodies, validated strictly against the official SDKs' types.

The SDK clients parse leniently (a missing field only fails when read), so these tests
validate every event with pydantic against the published types: a missing required field or a
wrong literal fails here. Token counts follow the documented rule (characters / 4).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import anthropic.types as anthropic_types
import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.realtime import RealtimeServerEvent
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from sidecar.simulate import embeddings
from sidecar.simulate.dialects import ChatCompletions, Dialect
from sidecar.simulate.messages_api import Messages, anthropic_error
from sidecar.simulate.prompt import embedding_inputs, prompt_tokens
from sidecar.simulate.realtime_events import Conversation, RealtimeResponse
from sidecar.simulate.responses_api import Responses

WORDS = [" the", " stream", " token"]


def run(dialect: Dialect, words: list[str] = WORDS) -> list[bytes]:
    """A whole stream's SSE events, as the generation sends them."""
    events = [*dialect.preamble(), *dialect.opening()]
    for index, word in enumerate(words, 1):
        events.append(dialect.delta(word, index, "length" if index == len(words) else None))
    return [*events, *dialect.closing(len(words), "length")]


def parse_sse(event: bytes) -> tuple[str | None, dict[str, Any]]:
    lines = event.decode().strip().split("\n")
    name = lines[0].removeprefix("event: ") if lines[0].startswith("event: ") else None
    return name, orjson.loads(lines[-1].removeprefix("data: "))


def test_prompt_tokens_count_every_api_s_input_text() -> None:
    chat = {"messages": [{"role": "user", "content": "a" * 40}]}
    assert prompt_tokens(chat) == 10
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "b" * 20}]}]}
    assert prompt_tokens(parts) == 5
    assert prompt_tokens({"prompt": "c" * 8}) == 2
    assert prompt_tokens({"input": "d" * 12, "instructions": "e" * 4}) == 4
    items = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "f" * 16}]}]}
    assert prompt_tokens(items) == 4
    anthropic = {"system": [{"type": "text", "text": "g" * 8}], "messages": chat["messages"]}
    assert prompt_tokens(anthropic) == 12
    assert prompt_tokens({}) == 1  # never zero, like a real tokenizer's BOS


def test_embedding_inputs_count_each_input() -> None:
    assert embedding_inputs("x" * 9) == [2]
    assert embedding_inputs(["x" * 4, "y" * 40]) == [1, 10]
    assert embedding_inputs([5, 6, 7]) == [3]
    assert embedding_inputs([[1, 2], [3]]) == [2, 1]
    assert embedding_inputs([]) is None
    assert embedding_inputs([1, "a"]) is None


def test_chat_stream_and_answer_are_openai_chat_types() -> None:
    body = {"stream_options": {"include_usage": True}}
    events = run(ChatCompletions("r1", "m", 1, 7, body, chat=True))
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [ChatCompletionChunk.model_validate(parse_sse(e)[1]) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS)
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 3)
    whole = ChatCompletion.model_validate(
        ChatCompletions("r1", "m", 1, 7, {}, chat=True).whole("x y", 2, "stop")
    )
    assert whole.choices[0].finish_reason == "stop" and whole.usage is not None
    assert whole.usage.total_tokens == 9


def test_responses_stream_is_the_openai_event_sequence() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    dialect = Responses("r2", "m", 1, 5, {"instructions": "be brief", "max_output_tokens": 3})
    events = [parse_sse(e) for e in run(dialect)]
    assert all(name == data["type"] for name, data in events)  # an event: line for each
    parsed = [adapter.validate_python(data) for _, data in events]
    assert [e.type for e in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    delta = parsed[4]
    assert (delta.delta, delta.item_id, delta.output_index, delta.content_index) == (
        " the",
        "msg_r2",
        0,
        0,
    )
    done = parsed[-1].response
    assert done.output_text == "".join(WORDS) and done.status == "completed"
    assert done.usage.input_tokens == 5 and done.usage.output_tokens == 3
    assert done.usage.total_tokens == 8
    assert done.usage.input_tokens_details.cached_tokens == 0
    assert done.usage.output_tokens_details.reasoning_tokens == 0
    whole = Response.model_validate(Responses("r3", "m", 1, 5, {}).whole("x y", 2, "stop"))
    assert whole.output_text == "x y" and whole.usage is not None
    failure = [adapter.validate_python(parse_sse(e)[1]) for e in dialect.stream_error("boom", 1)]
    assert [e.type for e in failure] == ["error", "response.failed"]


def test_messages_stream_is_the_anthropic_event_sequence() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(anthropic_types.RawMessageStreamEvent)
    events = [parse_sse(e) for e in run(Messages("r4", "claude-sim", 6))]
    assert all(name == data["type"] for name, data in events)
    kinds = [name for name, _ in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    parsed = [adapter.validate_python(data) for name, data in events if name != "ping"]
    assert parsed[0].message.usage.input_tokens == 6
    assert [p.delta.text for p in parsed if p.type == "content_block_delta"] == WORDS
    final = parsed[-2]
    assert final.delta.stop_reason == "max_tokens" and final.usage.output_tokens == 3
    whole = anthropic_types.Message.model_validate(Messages("r5", "m", 6).whole("x", 1, "stop"))
    assert whole.stop_reason == "end_turn" and whole.usage.output_tokens == 1
    name, error = parse_sse(Messages("r6", "m", 1).stream_error("boom", 0)[0])
    assert name == "error" and error == anthropic_error(500, "boom")
    assert anthropic_error(503, "busy")["error"]["type"] == "overloaded_error"


def test_realtime_events_are_openai_realtime_server_events() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    conversation = Conversation("m", instructions="be brief")
    assert conversation.add({"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "hello there!"}]}) is not None  # fmt: skip
    assert conversation.prompt_tokens() == 5  # 8 + 12 characters
    response = RealtimeResponse(conversation, conversation.prompt_tokens(), capped=False)
    raw = [*response.preamble(), *response.opening()]
    raw += [response.delta(w, i, None) for i, w in enumerate(WORDS, 1)]
    raw += response.closing(3, "length")
    parsed = [adapter.validate_python(orjson.loads(e)) for e in raw]
    assert [e.type for e in parsed] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = parsed[-1].response
    assert done.status == "completed"
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (5, 3, 8)
    assert done.usage.input_token_details.text_tokens == 5
    assert done.usage.input_token_details.cached_tokens == 0
    assert done.usage.output_token_details.text_tokens == 3
    cancelled = adapter.validate_python(orjson.loads(response.cancelled(2))).response
    assert cancelled.status == "cancelled" and cancelled.usage.output_tokens == 2
    assert cancelled.status_details.reason == "client_cancelled"
    capped = RealtimeResponse(conversation, 5, capped=True).closing(3, "length")[-1]
    assert adapter.validate_python(orjson.loads(capped)).response.status == "incomplete"


def test_a_session_rejects_what_the_api_would() -> None:
    conversation = Conversation("m")
    assert conversation.update({"max_output_tokens": 0}) is not None
    assert conversation.update({"instructions": 3}) is not None
    assert conversation.update({"max_output_tokens": 7, "instructions": "hi"}) is None
    assert conversation.cap(None) == 7 and conversation.cap(3) == 3
    assert conversation.add({"type": "message", "content": "not parts"}) is None
    assert conversation.add({"type": "function_call"}) is None


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_are_deterministic_unit_vectors(encoding: str) -> None:
    body = {"input": ["hello", "hello", "other text"], "encoding_format": encoding}
    answer = embeddings.answer(body, "embed-sim")
    if encoding == "float":
        parsed = CreateEmbeddingResponse.model_validate(answer)
        vectors = [d.embedding for d in parsed.data]
    else:
        vectors = [
            list(struct.unpack("<256f", base64.b64decode(d["embedding"]))) for d in answer["data"]
        ]
    assert len(vectors) == 3 and all(len(v) == 256 for v in vectors)
    assert vectors[0] == vectors[1] != vectors[2]
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-5
    assert answer["usage"] == {"prompt_tokens": 1 + 1 + 2, "total_tokens": 4}
    floats = embeddings.answer({"input": "hello"}, "m")["data"][0]["embedding"]
    assert floats == vectors[0]  # the same numbers either way


def test_embeddings_reject_bad_requests_in_one_line() -> None:
    for body, message in [
        ({}, "input must be"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format must be"),
        ({"input": "x", "dimensions": 0}, "dimensions must be"),
    ]:
        with pytest.raises(embeddings.EmbeddingsError, match=message):
            embeddings.answer(body, "m")
    assert len(embeddings.answer({"input": "x", "dimensions": 8}, "m")["data"][0]["embedding"]) == 8
