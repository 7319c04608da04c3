"""Each route's dialect (sidecar.upstream.routes): request shaping, the events read into the
relay's chunks, the non-streaming answer and the error event, fed with the simulator's own
events (whose shapes the official clients check in tests/unit/test_simulate_shapes.py)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from sidecar.accounting.stream import StreamAccount
from sidecar.errors import UpstreamError
from sidecar.ingress.families import parse_passthrough_routes, route_label
from sidecar.ingress.passthrough import content_type
from sidecar.ingress.scope import prompt_chars
from sidecar.simulate.messages_api import Messages
from sidecar.simulate.responses_api import Responses
from sidecar.telemetry.names import ROUTE_LABELS
from sidecar.upstream import embeddings as embeddings_module
from sidecar.upstream.embeddings import EmbeddingsReader, WholeBody
from sidecar.upstream.flavour import Flavour
from sidecar.upstream.messages import MessagesReader
from sidecar.upstream.responses import ResponsesReader
from sidecar.upstream.routes import PROTOCOL_PATHS, ROUTES, Reader
from sidecar.upstream.sse import (
    END,
    Chunk,
    Content,
    Finish,
    Malformed,
    PromptUsage,
    SSEDecoder,
    UpstreamFailure,
    Usage,
    UsageDetails,
    read_chunk,
)

WORDS = [" the", " stream", " token"]


def account(path: str) -> StreamAccount:
    return StreamAccount("s1", "r1", None, "m", "t", "http", path, 1_700_000_000.0, 0.0)


def read_all(reader: Reader, events: list[bytes]) -> tuple[list[Chunk], list[bytes | None]]:
    """Decode the SSE bytes and read every payload: the chunks and the event names seen."""
    decoder = SSEDecoder()
    chunks: list[Chunk] = []
    names: list[bytes | None] = []
    for payload in decoder.feed(b"".join(events)) + decoder.flush():
        chunks += reader.read(payload)
        names.append(reader.event)
    return chunks, names


def responses_stream(finish_with: list[bytes] | None = None) -> tuple[Responses, list[bytes]]:
    sim = Responses("abc", "m", 1_700_000_000, 9, {"max_output_tokens": 3})
    events = sim.preamble() + sim.opening()
    events += [sim.delta(word, i + 1, None) for i, word in enumerate(WORDS)]
    events += finish_with if finish_with is not None else sim.closing(3, "length")
    return sim, events


def messages_stream() -> tuple[Messages, list[bytes]]:
    sim = Messages("abc", "m", 9)
    events = sim.opening() + [sim.delta(word, i + 1, None) for i, word in enumerate(WORDS)]
    return sim, events + sim.closing(3, "length")


# Shaping -----------------------------------------------------------------------------------


def test_only_chat_and_completions_get_stream_options() -> None:
    body = {"model": "m", "input": "hi", "stream": False}
    for path in ("/v1/responses", "/v1/messages"):
        shaped = ROUTES[path].shape(body, Flavour.VLLM, "id")
        assert shaped.body == {**body, "stream": True}  # nothing else added
        assert not shaped.client_wants_stream and shaped.client_wants_usage
    chat = ROUTES["/v1/chat/completions"].shape({"messages": []}, Flavour.VLLM, "id")
    assert chat.body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    embed = {"model": "e", "input": ["a", "b"]}
    assert ROUTES["/v1/embeddings"].shape(embed, Flavour.SGLANG, "id").body is embed


def test_protocol_v1_may_name_every_streaming_route() -> None:
    streaming = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"}
    assert streaming == PROTOCOL_PATHS
    assert ROUTES["/v1/chat/completions"].reader(True).read is read_chunk  # the hot path


def test_route_names_are_the_metric_labels() -> None:
    assert {path: route.name for path, route in ROUTES.items()} == {
        path: label for path, label in ROUTE_LABELS.items() if path in ROUTES
    }


# Responses ---------------------------------------------------------------------------------


def test_responses_stream_reads_text_usage_finish_and_end() -> None:
    _, events = responses_stream()
    reader = ResponsesReader()
    chunks, names = read_all(reader, events)
    assert chunks == [
        *(Content(word) for word in WORDS),
        Usage(9, 3, final=True),
        UsageDetails(0, 0),
        Finish("stop"),
        END,
    ]
    assert names[0] == b"response.created" and names[-1] == b"response.completed"
    whole = json.loads(reader.answer(account("/v1/responses"), ""))
    assert whole["status"] == "completed" and whole["usage"]["output_tokens"] == 3
    assert whole["output"][0]["content"][0]["text"] == "".join(WORDS)


def test_responses_incomplete_is_length_and_failures_fail() -> None:
    sim, events = responses_stream([])
    incomplete = sim.response("incomplete", 3)
    incomplete["incomplete_details"] = {"reason": "max_output_tokens"}
    incomplete["usage"]["input_tokens_details"] = {"cached_tokens": 4}
    del incomplete["usage"]["output_tokens_details"]
    last = b"data: " + orjson.dumps({"type": "response.incomplete", "response": incomplete})
    chunks, _ = read_all(ResponsesReader(), [*events, last + b"\n\n"])
    assert chunks[-4:] == [Usage(9, 3, final=True), UsageDetails(4, None), Finish("length"), END]

    failed = responses_stream(sim.stream_error("boom", 2))[1]
    chunks, _ = read_all(ResponsesReader(), failed)
    assert chunks[-2:] == [UpstreamFailure("boom"), UpstreamFailure("boom")]
    reader = ResponsesReader()
    assert reader.read('{"type":"response.failed","response":{"error":null}}') == [
        UpstreamFailure("response.failed")
    ]
    assert reader.read('{"type":"response.completed"}') == [
        Malformed("response.completed without a response object")
    ]
    assert reader.read("{not json") == [Malformed("{not json")] and reader.event is None
    assert reader.read("[]") == [Malformed("[]")]
    assert reader.read('{"type":"response.output_text.delta","delta":""}') == []


def test_responses_error_event_continues_the_sequence() -> None:
    reader = ResponsesReader()
    reader.read('{"type":"response.created","sequence_number":7,"response":{}}')
    event = reader.error_event("upstream_timeout", "no answer", 504)
    assert event.startswith(b"event: error\ndata: ")
    data = json.loads(event.split(b"data: ")[1])
    assert data == {
        "type": "error",
        "code": "upstream_timeout",
        "message": "no answer",
        "param": None,
        "sequence_number": 8,
    }


# Messages ----------------------------------------------------------------------------------


def test_messages_stream_reads_prompt_text_usage_and_end() -> None:
    _, events = messages_stream()
    reader = MessagesReader()
    chunks, names = read_all(reader, events)
    assert chunks == [
        PromptUsage(9),
        UsageDetails(0, None),
        *(Content(word) for word in WORDS),
        Finish("length"),
        Usage(9, 3, final=True),
        END,
    ]
    assert names[:3] == [b"message_start", b"content_block_start", b"ping"]
    assert names[-1] == b"message_stop"


def test_messages_whole_answer_is_the_message_anthropic_would_send() -> None:
    sim, events = messages_stream()
    reader = MessagesReader(whole=True)
    read_all(reader, events)
    rebuilt = json.loads(reader.answer(account("/v1/messages"), ""))
    assert rebuilt == sim.whole("".join(WORDS), 3, "length")


def test_messages_tool_use_blocks_and_cache_tokens() -> None:
    reader = MessagesReader(whole=True)
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "usage": {
                "input_tokens": 5,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 1,
            },
        },
    }
    assert reader.read(json.dumps(start)) == [PromptUsage(1105), UsageDetails(1000, None)]
    block = {"type": "tool_use", "id": "t1", "name": "get", "input": {}}
    reader.read(json.dumps({"type": "content_block_start", "index": 0, "content_block": block}))
    for part in ('{"city": ', '"Paris"}'):
        delta = {"type": "input_json_delta", "partial_json": part}
        assert (
            reader.read(json.dumps({"type": "content_block_delta", "index": 0, "delta": delta}))
            == []
        )
    # vLLM repeats the input tokens in message_delta
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use"},
        "usage": {"input_tokens": 6, "output_tokens": 12},
    }
    assert reader.read(json.dumps(end)) == [Finish("tool_calls"), Usage(6, 12, final=True)]
    message = json.loads(reader.answer(account("/v1/messages"), ""))
    assert message["content"] == [
        {"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Paris"}}
    ]
    assert message["stop_reason"] == "tool_use" and message["usage"]["output_tokens"] == 12


def test_messages_errors_and_oddities() -> None:
    reader = MessagesReader()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert reader.read(json.dumps(error)) == [UpstreamFailure("Overloaded")]
    assert reader.read("nope") == [Malformed("nope")]
    assert reader.read('"x"') == [Malformed('"x"')]
    assert reader.read('{"type":"message_start","message":{"usage":{}}}') == []
    assert reader.read('{"type":"message_delta","delta":{"stop_reason":"end_turn"}}') == [
        Finish("stop")
    ]
    # output usage before any prompt usage cannot make a complete Usage
    assert reader.read('{"type":"message_delta","usage":{"output_tokens":3}}') == []
    assert reader.read('{"type":"content_block_delta","delta":"x"}') == []
    assert reader.read('{"type":"a_future_event"}') == [] and reader.event == b"a_future_event"
    event = reader.error_event("upstream_error", "gone", 502)
    data = json.loads(event.split(b"data: ")[1])
    assert event.startswith(b"event: error\n") and data["error"]["message"] == "gone"


# Embeddings --------------------------------------------------------------------------------


def test_embeddings_body_is_read_whole_and_relayed_as_sent() -> None:
    body = {"object": "list", "data": [], "model": "e", "usage": {"prompt_tokens": 7}}
    raw = orjson.dumps(body)
    decoder = WholeBody()
    assert decoder.feed(raw[:10]) == [] and decoder.feed(raw[10:]) == []
    (payload,) = decoder.flush()
    reader = EmbeddingsReader()
    assert reader.read(payload) == [Usage(7, 0, final=True), END]
    assert reader.answer(account("/v1/embeddings"), "") == raw
    assert WholeBody().flush() == []
    assert EmbeddingsReader().read('{"data":[]}') == [END]
    assert EmbeddingsReader().read('{"error":{"message":"bad"}}') == [UpstreamFailure("bad")]
    assert EmbeddingsReader().read("<html>") == [Malformed("<html>")]
    assert EmbeddingsReader().read("[1]") == [Malformed("[1]")]


def test_embeddings_answer_too_large_is_an_upstream_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embeddings_module, "MAX_BODY", 10)
    decoder = WholeBody()
    decoder.feed(b"12345")
    with pytest.raises(UpstreamError):
        decoder.feed(b"123456")


# Passthrough and prompts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/models", "/v1/models"),
        ("/v1/models/sim-small", "/v1/models"),
        ("/v1/messages/count_tokens", "/v1/messages"),
        ("/v1/x-made-up-" + "a" * 500, "other"),
        ("/v1/", "other"),
    ],
)
def test_passthrough_labels_are_bounded(path: str, label: str) -> None:
    assert route_label(path) == label


def test_passthrough_content_type_is_sniffed() -> None:
    assert content_type(b'{"data": []}') == b"application/json"
    assert content_type(b"\x00binary") == b"application/octet-stream"


@pytest.mark.parametrize(
    ("body", "chars"),
    [
        ({"messages": [{"role": "user", "content": "abcd"}]}, 4),
        ({"prompt": ["ab", "cd"]}, 4),
        ({"input": "abcdefgh", "instructions": "xy"}, 10),
        ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "abc"}]}]}, 3),
        ({"system": [{"type": "text", "text": "ab"}], "messages": []}, 2),
        ({"input": [[1, 2, 3]]}, 0),
    ],
)
def test_prompt_characters_on_every_route(body: dict[str, Any], chars: int) -> None:
    assert prompt_chars(body) == chars


def test_responses_error_event_takes_the_failed_events_number() -> None:
    reader = ResponsesReader()
    reader.read('{"type":"response.output_text.delta","sequence_number":5,"delta":"x"}')
    assert reader.read('{"type":"error","sequence_number":6,"message":"boom"}') == [
        UpstreamFailure("boom")
    ]
    data = json.loads(reader.error_event("upstream_error", "boom", 502).split(b"data: ")[1])
    assert data["sequence_number"] == 6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", None),
        ("none", frozenset()),
        ("models", frozenset({"models"})),
        (" models , /v1/files,other ", frozenset({"models", "files", "other"})),
    ],
)
def test_passthrough_routes_are_all_none_or_families(
    text: str, expected: frozenset[str] | None
) -> None:
    assert parse_passthrough_routes(text) == expected


@pytest.mark.parametrize("text", ["", "models,fils", "all,models", "/v2/models"])
def test_a_passthrough_route_that_is_no_family_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="is not an API family") as refused:
        parse_passthrough_routes(text)
    assert "\n" not in str(refused.value)
