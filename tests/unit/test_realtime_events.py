"""Reading realtime server events for accounting (sidecar.upstream.realtime), with the
simulator's own events (whose shapes the `openai` client parses in test_simulate_realtime)."""

from __future__ import annotations

import json

import pytest

from sidecar.errors import ConfigError
from sidecar.simulate.realtime_events import Conversation, RealtimeResponse
from sidecar.upstream.realtime import (
    RealtimeUsage,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseText,
    client_text,
    read_server_event,
    upstream_urls,
)
from sidecar.upstream.sse import Malformed


def test_a_response_from_created_to_done() -> None:
    sim = RealtimeResponse(Conversation("m"), 12, capped=True)
    events = [
        *sim.preamble(),
        *sim.opening(),
        sim.delta(" hi", 1, None),
        sim.delta(" you", 2, "length"),
    ]
    events += sim.closing(2, "length")
    read = [read_server_event(e) for e in events]
    assert [e for e in read if e is not None] == [
        ResponseCreated(sim.id),
        ResponseText(sim.id, " hi"),
        ResponseText(sim.id, " you"),
        ResponseDone(sim.id, "incomplete", RealtimeUsage(12, 2, 0, 0, 0), "length", None),
    ]
    assert read_server_event(sim.cancelled(2)) == ResponseDone(
        sim.id, "cancelled", RealtimeUsage(12, 2, 0, 0, 0), None, None
    )
    failed = [read_server_event(e) for e in sim.failed("boom", 0)]
    assert failed[0] is None  # the `error` event: relayed, the response.done decides
    assert failed[1] == ResponseDone(sim.id, "failed", RealtimeUsage(12, 0, 0, 0, 0), None, "boom")


def test_audio_transcripts_count_and_audio_chunks_do_not() -> None:
    transcript = {
        "type": "response.output_audio_transcript.delta",
        "response_id": "r",
        "delta": "a",
    }
    assert read_server_event(json.dumps(transcript)) == ResponseText("r", "a")
    beta = {"type": "response.audio_transcript.delta", "response_id": "r", "delta": "b"}
    assert read_server_event(json.dumps(beta).encode()) == ResponseText("r", "b")
    audio = {"type": "response.output_audio.delta", "response_id": "r", "delta": "AAAA"}
    assert read_server_event(json.dumps(audio)) == ResponseAudio("r")
    assert read_server_event('{"type":"response.audio.delta"}') is None
    assert read_server_event('{"type":"response.output_text.delta","response_id":"r"}') is None
    usage = {
        "input_tokens": 30,
        "output_tokens": 50,
        "input_token_details": {"audio_tokens": 20, "cached_tokens": 8, "text_tokens": 10},
        "output_token_details": {"audio_tokens": 45, "text_tokens": 5},
    }
    done = {"type": "response.done", "response": {"id": "r", "status": "completed", "usage": usage}}
    assert read_server_event(json.dumps(done)) == ResponseDone(
        "r", "completed", RealtimeUsage(30, 50, 20, 45, 8), "stop", None
    )


def test_odd_events() -> None:
    assert read_server_event("{not json") == Malformed("{not json")
    assert read_server_event('{"type":"response.created"}') == Malformed(
        "response.created without a response id"
    )
    assert read_server_event('{"type":"session.created","session":{}}') is None
    bare = '{"type":"response.done","response":{"id":"r","usage":{"input_tokens":1}}}'
    assert read_server_event(bare) == ResponseDone("r", "completed", None, "stop", None)


def test_what_clients_add_to_the_conversation() -> None:
    item = {"type": "conversation.item.create", "item": {"content": [{"text": "abcd"}, {}]}}
    assert client_text(json.dumps(item)) == ("item", 4)
    update = {"type": "session.update", "session": {"instructions": "be brief"}}
    assert client_text(json.dumps(update).encode()) == ("instructions", 8)
    assert client_text('{"type":"session.update","session":{"voice":"x"}}') is None
    assert client_text('{"type":"input_audio_buffer.append","audio":"AAAA"}') is None
    assert client_text('"conversation.item.create" {') is None
    assert client_text('{"type":"conversation.item.create","item":"x"}') is None


def test_upstream_urls() -> None:
    assert upstream_urls("http://h:8000", None) == ("http://h:8000", "ws://h:8000")
    assert upstream_urls("wss://h/v1x/", None) == ("https://h/v1x/", "wss://h/v1x")
    assert upstream_urls("http://h:8000", "ws://rt:9000/") == ("http://h:8000", "ws://rt:9000")
    with pytest.raises(ConfigError, match="--realtime-upstream http://rt: must be ws"):
        upstream_urls("http://h", "http://rt")
