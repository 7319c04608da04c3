"""The span tree of one session with a completed and a cancelled stream, read back in memory."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sidecar.accounting.stream import Outcome
from sidecar.telemetry import attributes as a
from sidecar.telemetry.spans import NOOP_SESSION, NOOP_STREAM, Tracing
from tests.telemetry.streams import (
    CHAT_BODY,
    CLIENT_SPAN_ID,
    CLIENT_TRACE_ID,
    COMPLETION,
    PROMPT,
    TRACEPARENT,
    account,
    run_session,
)

HEADERS = [(b"host", b"sidecar"), (b"traceparent", TRACEPARENT.encode())]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def tracing(exporter: InMemorySpanExporter, capture_content: bool = False) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(
        provider,
        provider_name="vllm",
        upstream_url="http://10.0.0.5:8000/v1",
        capture_content=capture_content,
    )


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_span_tree_and_attributes(exporter: InMemorySpanExporter) -> None:
    session = tracing(exporter).session_span(HEADERS, "sess-1", "acme", "192.0.2.7:51000")
    run_session(session)
    spans = by_name(exporter)
    assert sorted(spans) == ["chat sim-small", "sidecar.session", "text_completion sim-large"]
    root, full, stop = (
        spans["sidecar.session"],
        spans["chat sim-small"],
        spans["text_completion sim-large"],
    )

    assert root.kind is SpanKind.SERVER
    assert root.parent is not None and root.parent.is_remote
    assert format(root.parent.span_id, "016x") == CLIENT_SPAN_ID
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {CLIENT_TRACE_ID}
    assert dict(root.attributes or {}) == {
        a.GEN_AI_CONVERSATION_ID: "sess-1",
        a.TENANT: "acme",
        a.CLIENT_ADDRESS: "192.0.2.7",
        a.CLIENT_PORT: 51000,
        a.SESSION_STREAMS: 2,
        a.HEARTBEAT_MISSED: 1,
        a.HEARTBEAT_RTT_P50: 0.01,
        a.HEARTBEAT_RTT_MAX: 0.05,
        a.DISCONNECT_REASON: "client_closed",
    }
    assert [e.name for e in root.events] == [a.EVENT_HEARTBEAT_MISSED]

    common = {
        a.GEN_AI_PROVIDER_NAME: "vllm",
        a.GEN_AI_REQUEST_STREAM: True,
        a.GEN_AI_CONVERSATION_ID: "sess-1",
        a.SERVER_ADDRESS: "10.0.0.5",
        a.SERVER_PORT: 8000,
        a.TENANT: "acme",
        a.INGRESS: "ws",
    }
    for span in (full, stop):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == root.context.span_id
    assert dict(full.attributes or {}) == {
        **common,
        a.GEN_AI_OPERATION_NAME: "chat",
        a.GEN_AI_REQUEST_MODEL: "sim-small",
        a.GEN_AI_REQUEST_MAX_TOKENS: 3,
        a.GEN_AI_REQUEST_TEMPERATURE: 0.5,
        a.REQUEST_ID: "full",
        a.STREAM_ID: "s-full",
        a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.1,
        a.GEN_AI_USAGE_INPUT_TOKENS: 4,
        a.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
        a.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        a.DELIVERED_TOKENS: 3,
        a.WASTED_TOKENS: 0,
        a.OUTCOME: "completed",
        a.COUNT_SOURCE: "usage",
    }
    assert full.status.status_code is StatusCode.UNSET
    assert [e.name for e in full.events] == [a.EVENT_FIRST_TOKEN]

    assert dict(stop.attributes or {}) == {
        **common,
        a.GEN_AI_OPERATION_NAME: "text_completion",
        a.GEN_AI_REQUEST_MODEL: "sim-large",
        a.GEN_AI_REQUEST_MAX_TOKENS: 300,
        a.REQUEST_ID: "stop",
        a.STREAM_ID: "s-stop",
        a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.2,
        a.UPSTREAM_CANCEL_SECONDS: 0.004,
        a.GEN_AI_USAGE_INPUT_TOKENS: 4,
        a.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
        a.DELIVERED_TOKENS: 2,
        a.WASTED_TOKENS: 1,
        a.OUTCOME: "client_cancelled",
        a.COUNT_SOURCE: "counted",
        a.ERROR_TYPE: "client_cancelled",
    }
    # The user pressed stop: recorded as error.type, but not an error status on dashboards.
    assert stop.status.status_code is StatusCode.UNSET
    assert [e.name for e in stop.events] == [
        a.EVENT_FIRST_TOKEN,
        a.EVENT_CLIENT_GONE,
        a.EVENT_UPSTREAM_CANCELLED,
    ]
    assert dict(stop.events[2].attributes or {}) == {a.UPSTREAM_CANCEL_SECONDS: 0.004}


def test_traceparent_injected_for_the_upstream(exporter: InMemorySpanExporter) -> None:
    session = tracing(exporter).session_span(HEADERS, "sess-1", "acme", None)
    stream = session.stream_started(account("r", "/v1/chat/completions", "m"), CHAT_BODY)
    headers: dict[str, str] = {}
    stream.inject(headers)
    stream.end(account("r", "/v1/chat/completions", "m"))
    span = by_name(exporter)["chat m"]
    assert headers == {"traceparent": f"00-{CLIENT_TRACE_ID}-{span.context.span_id:016x}-01"}
    assert stream.trace_id_hex == CLIENT_TRACE_ID


def test_without_traceparent_the_session_starts_a_trace(exporter: InMemorySpanExporter) -> None:
    session = tracing(exporter).session_span([], "sess-2", "acme", "[::1]:5")
    session.end(None, None, 0, None)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    attrs = dict(span.attributes or {})
    assert attrs[a.CLIENT_ADDRESS] == "[::1]" and attrs[a.CLIENT_PORT] == 5
    assert a.HEARTBEAT_RTT_P50 not in attrs and a.DISCONNECT_REASON not in attrs


def _everything(span: ReadableSpan) -> str:
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    return repr((span.name, dict(span.attributes or {}), events))


def test_no_content_unless_enabled(exporter: InMemorySpanExporter) -> None:
    run_session(tracing(exporter).session_span(HEADERS, "sess-1", "acme", None))
    for span in exporter.get_finished_spans():
        text = _everything(span)
        assert PROMPT not in text and "cake" not in text, span.name
        assert not any(
            k.startswith(("gen_ai.input", "gen_ai.output")) for k in span.attributes or {}
        )


def test_content_when_enabled(exporter: InMemorySpanExporter) -> None:
    run_session(tracing(exporter, capture_content=True).session_span(HEADERS, "s", "t", None))
    spans = by_name(exporter)
    full = dict(spans["chat sim-small"].attributes or {})
    assert json.loads(str(full[a.GEN_AI_INPUT_MESSAGES])) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(str(full[a.GEN_AI_OUTPUT_MESSAGES])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": COMPLETION}],
            "finish_reason": "stop",
        }
    ]
    stop = dict(spans["text_completion sim-large"].attributes or {})
    assert json.loads(str(stop[a.GEN_AI_INPUT_MESSAGES]))[0]["parts"][0]["content"] == PROMPT
    assert json.loads(str(stop[a.GEN_AI_OUTPUT_MESSAGES]))[0]["finish_reason"] == (
        "client_cancelled"
    )


def test_failure_is_an_error_and_ends_once(exporter: InMemorySpanExporter) -> None:
    session = tracing(exporter).session_span([], "s", "t", None)
    acc = account("x", "/v1/chat/completions", "m")
    stream = session.stream_started(acc, {})
    acc.finish(Outcome.UPSTREAM_ERROR, 11.0, error_code="upstream_status_500")
    stream.end(acc)
    stream.end(acc)  # a second end (and late events) must neither raise nor re-export
    stream.first_token(1.0)
    stream.client_gone()
    stream.upstream_cancelled(1.0)
    session.end(None, None, 0, "client_closed")
    session.end(None, None, 0, "client_closed")
    session.heartbeat_missed()
    spans = by_name(exporter)
    assert len(exporter.get_finished_spans()) == 2
    span = spans["chat m"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[a.ERROR_TYPE] == "upstream_status_500"
    assert span.events == ()


def test_http_stream_is_a_child_of_the_request_span(exporter: InMemorySpanExporter) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = Tracing(provider)
    acc = account("h", "/v1/completions", "m")
    acc.session_id = None
    with provider.get_tracer("test").start_as_current_span("POST /v1/completions") as request:
        stream = traced.http_stream(acc, {})
    acc.finish(Outcome.COMPLETED, 11.0)
    stream.end(acc)
    span = by_name(exporter)["text_completion m"]
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
    attrs: dict[str, Any] = dict(span.attributes or {})
    assert a.GEN_AI_CONVERSATION_ID not in attrs and a.SERVER_ADDRESS not in attrs
    assert attrs[a.GEN_AI_PROVIDER_NAME] == "openai"


def test_noop_is_shared_and_allocates_nothing() -> None:
    off = Tracing(None)
    assert not off.enabled
    acc = account("n", "/v1/chat/completions", "m")
    headers: dict[str, str] = {}
    session = off.session_span(HEADERS, "s", "t", "1.2.3.4:5")
    assert session is NOOP_SESSION
    assert session.stream_started(acc, CHAT_BODY) is NOOP_STREAM
    assert off.http_stream(acc, CHAT_BODY) is NOOP_STREAM
    assert NOOP_STREAM.trace_id_hex is None and not NOOP_STREAM.capture_content
    NOOP_STREAM.inject(headers)
    assert headers == {}

    def cycle() -> None:
        s = off.session_span(HEADERS, "s", "t", "1.2.3.4:5")
        st = s.stream_started(acc, CHAT_BODY)
        st.inject(headers)
        st.first_token(0.1)
        st.client_gone()
        st.upstream_cancelled(0.1)
        st.end(acc)
        s.heartbeat_missed()
        s.end(0.1, 0.2, 0, "client_closed")

    cycle()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(10_000):
            cycle()
        after = tracemalloc.take_snapshot()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename") if d.size_diff > 0)
    assert grown < 4096 and peak < 64 * 1024, (grown, peak)


def test_first_token_is_derived_from_the_account(exporter: InMemorySpanExporter) -> None:
    """The session code may skip `first_token()`: `end` reads it from the account's clock."""
    session = tracing(exporter).session_span([], "s", "t", None)
    acc = account("d", "/v1/chat/completions", "m")
    stream = session.stream_started(acc, {})
    acc.on_content(10.25, "hi")  # t_start is 10.0
    acc.finish(Outcome.COMPLETED, 10.5)
    stream.end(acc)
    span = by_name(exporter)["chat m"]
    assert dict(span.attributes or {})[a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == 0.25
    (event,) = span.events
    assert event.name == a.EVENT_FIRST_TOKEN
    assert span.start_time is not None
    assert event.timestamp - span.start_time == 250_000_000


@pytest.mark.parametrize(
    ("url", "address", "port"),
    [
        ("https://api.openai.com/v1", "api.openai.com", 443),
        ("http://vllm", "vllm", 80),
        ("http://[::1]:8000", "::1", 8000),
        ("http://host:notaport", "host", 80),
    ],
)
def test_server_address_and_port(
    exporter: InMemorySpanExporter, url: str, address: str, port: int
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    acc = account("u", "/v1/completions", "m")
    stream = (
        Tracing(provider, upstream_url=url)
        .session_span([], "s", "t", None)
        .stream_started(acc, {"max_tokens": True, "top_p": 0.9})
    )
    stream.end(acc)
    attrs = dict(by_name(exporter)["text_completion m"].attributes or {})
    assert (attrs[a.SERVER_ADDRESS], attrs[a.SERVER_PORT]) == (address, port)
    assert attrs[a.GEN_AI_REQUEST_TOP_P] == 0.9 and a.GEN_AI_REQUEST_MAX_TOKENS not in attrs
    assert attrs[a.OUTCOME] == "interrupted"  # ended without an outcome: never silently "ok"


@pytest.mark.parametrize(
    ("path", "body", "operation", "max_tokens", "stream"),
    [
        ("/v1/responses", {"input": "hi", "max_output_tokens": 9}, "chat", 9, True),
        ("/v1/messages", {"messages": [], "max_tokens": 7}, "chat", 7, True),
        ("/v1/embeddings", {"input": ["a"]}, "embeddings", None, False),
    ],
)
def test_each_route_names_its_operation_and_usage_details(
    exporter: InMemorySpanExporter,
    path: str,
    body: dict[str, Any],
    operation: str,
    max_tokens: int | None,
    stream: bool,
) -> None:
    acc = account("r", path, "m")
    trace = tracing(exporter).http_stream(acc, body)
    acc.on_usage(40, 3, final=True)
    acc.cached_prompt_tokens, acc.reasoning_tokens = 32, 2
    acc.finish(Outcome.COMPLETED, 11.0)
    trace.end(acc)
    attrs: dict[str, Any] = dict(by_name(exporter)[f"{operation} m"].attributes or {})
    assert attrs[a.GEN_AI_OPERATION_NAME] == operation
    assert attrs.get(a.GEN_AI_REQUEST_MAX_TOKENS) == max_tokens
    assert attrs[a.GEN_AI_REQUEST_STREAM] is stream
    assert attrs[a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 32
    assert attrs[a.REASONING_TOKENS] == 2
