"""Arbitrary input never escapes a parser as an exception: it becomes a typed value.

Stronger than tests/unit: structured-but-wrong JSON (right keys, wrong types), deep nesting,
huge numbers, invalid UTF-8, and SSE streams cut at every boundary.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.ingress import protocol
from sidecar.ingress.protocol import Ack, Cancel, Generate, Ping, Pong, ProtocolError, Resume
from sidecar.security import credentials
from sidecar.security.limits import Refusal
from sidecar.security.output import cap_output
from sidecar.upstream import sse

CHUNKS = (sse.Content, sse.Usage, sse.Finish, sse.StreamEnd, sse.UpstreamFailure, sse.Malformed)
EVENTS = (Generate, Cancel, Ack, Resume, Ping, Pong, ProtocolError)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
types = st.sampled_from(["generate", "cancel", "ack", "resume", "ping", "pong", "x", ""])
keys = st.sampled_from(["type", "id", "body", "path", "seq", "after_seq", "t", "messages"])
frames = st.dictionaries(keys, json_values | types, max_size=6).map(
    lambda d: d | {"type": d["type"]} if "type" in d else d
)


def _check_event(event: object) -> None:
    assert isinstance(event, EVENTS)
    if isinstance(event, ProtocolError):
        assert event.code and event.message
        assert event.id is None or (isinstance(event.id, str) and len(event.id) <= 128)
    elif isinstance(event, Generate):
        assert isinstance(event.body, dict) and event.path in protocol.PATHS
    elif isinstance(event, Ack | Resume):
        assert isinstance(event.id, str) and 0 < len(event.id) <= 128


@PROFILE
@given(frames, st.sampled_from(["str", "bytes"]))
def test_structured_frames_give_a_typed_event(frame: dict[str, Any], as_: str) -> None:
    try:
        text = json.dumps(frame)
    except (ValueError, OverflowError):
        return
    _check_event(protocol.parse_client_frame(text if as_ == "str" else text.encode()))


@PROFILE
@given(st.binary(max_size=2048))
def test_random_bytes_give_a_typed_event(data: bytes) -> None:
    _check_event(protocol.parse_client_frame(data))


@PROFILE
@given(frames, st.integers(min_value=0, max_value=200))
def test_truncated_frames_give_a_typed_event(frame: dict[str, Any], cut: int) -> None:
    try:
        text = json.dumps(frame)
    except (ValueError, OverflowError):
        return
    _check_event(protocol.parse_client_frame(text[:cut]))


def test_deep_nesting_and_huge_numbers() -> None:
    for text in ("[" * 100_000, '{"a":' * 5000, '{"type":"ack","id":"x","seq":1e400}', "1" * 10**5):
        _check_event(protocol.parse_client_frame(text))


sse_lines = st.lists(
    st.sampled_from(
        [
            b"data: [DONE]",
            b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}',
            b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}',
            b'data: {"error":{"message":"x"}}',
            b"data: {not json",
            b": comment",
            b"event: x",
            b"",
            b"data:",
            b"\xff\xfe",
        ]
    )
    | st.binary(max_size=60),
    max_size=30,
)


@PROFILE
@given(sse_lines, st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_sse_streams_cut_anywhere_give_typed_chunks(lines: list[bytes], cuts: list[int]) -> None:
    data = b"\r\n".join(lines)
    points = sorted({min(c, len(data)) for c in cuts})
    decoder = sse.SSEDecoder()
    payloads: list[str] = []
    start = 0
    for point in [*points, len(data)]:
        payloads += decoder.feed(data[start:point])
        start = point
    payloads += decoder.flush()
    whole = sse.SSEDecoder()
    assert payloads == whole.feed(data) + whole.flush()  # boundaries never change the result
    for payload in payloads:
        assert isinstance(payload, str)
        for chunk in sse.read_chunk(payload):
            assert isinstance(chunk, CHUNKS)


@PROFILE
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6).map(json.dumps))
def test_sse_payloads_of_any_json_give_typed_chunks(payload: str) -> None:
    for chunk in sse.read_chunk(payload):
        if isinstance(chunk, sse.Usage):
            assert isinstance(chunk.prompt_tokens, int)
        if isinstance(chunk, sse.Content):
            assert isinstance(chunk.text, str) and chunk.text


headers = st.lists(
    st.tuples(
        st.sampled_from([b"authorization", b"sec-websocket-protocol", b"x-sidecar-tenant", b"x"]),
        st.binary(max_size=40),
    ),
    max_size=6,
)


@PROFILE
@given(headers, st.binary(max_size=80), st.lists(st.text(max_size=20), max_size=4))
def test_credentials_never_raise(
    raw_headers: list[tuple[bytes, bytes]], query: bytes, subprotocols: list[str]
) -> None:
    scope = {
        "type": "websocket",
        "headers": raw_headers,
        "query_string": query,
        "subprotocols": subprotocols,
    }
    found = credentials.extract(scope)
    assert found is None or (found.token and len(found.token) <= credentials.MAX_TOKEN)
    clean = credentials.scrubbed(scope, "acme")
    assert credentials.extract(clean) is None or found is None
    assert not any(k == b"authorization" for k, _ in clean["headers"])


@PROFILE
@given(
    st.dictionaries(
        st.sampled_from(["max_tokens", "max_completion_tokens", "n", "best_of", "prompt", "x"]),
        json_values,
    )
)
def test_cap_output_total(body: dict[str, Any]) -> None:
    result = cap_output(body, 50)
    if not isinstance(result, Refusal):
        capped, total = result
        asked = [capped.get(k) for k in ("max_tokens", "max_completion_tokens")]
        assert any(isinstance(v, int) and 0 < v <= 50 for v in asked)
        assert total is not None and 0 < total <= 50
