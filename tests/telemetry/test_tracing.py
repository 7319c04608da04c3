"""Tracer provider from OTEL_* variables, a real OTLP/HTTP export, and HTTP-only instrumentation."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.errors import ConfigError
from sidecar.telemetry.tracing import (
    Tracing,
    build_tracer_provider,
    capture_content_from_env,
    instrument_http,
)
from tests.support.timeouts import scaled
from tests.telemetry.streams import CLIENT_TRACE_ID, TRACEPARENT, run_session


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def exporters(provider: TracerProvider) -> list[Any]:
    processors = provider._active_span_processor._span_processors
    return [p.span_exporter for p in processors]  # type: ignore[attr-defined]


def test_nothing_is_exported_by_default() -> None:
    assert build_tracer_provider() is None


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_endpoint_turns_on_otlp_http(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://127.0.0.1:1")
    provider = build_tracer_provider()
    assert provider is not None
    try:
        assert [type(e) for e in exporters(provider)] == [OTLPSpanExporter]
        assert provider.resource.attributes["service.name"] == "ai-stream-sidecar"
    finally:
        provider.shutdown()


def test_console_and_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-7")
    provider = build_tracer_provider(console=True)
    assert provider is not None
    try:
        assert [type(e) for e in exporters(provider)] == [ConsoleSpanExporter]
        assert provider.resource.attributes["service.name"] == "edge-7"
    finally:
        provider.shutdown()


def batching(provider: TracerProvider) -> tuple[int, float]:
    processor = provider._active_span_processor._span_processors[0]._batch_processor  # type: ignore[attr-defined]
    return processor._max_export_batch_size, processor._schedule_delay


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (64, 0.5)),  # small batches often: encoding one holds the GIL
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "256", "OTEL_BSP_SCHEDULE_DELAY": "2000"}, (256, 2.0)),
    ],
)
def test_export_batching_defaults_yield_to_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: tuple[int, float]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    provider = build_tracer_provider(console=True)
    assert provider is not None
    try:
        assert batching(provider) == expected
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("env", "provider_expected"),
    [
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ],
)
def test_standard_switches(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], provider_expected: bool
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    provider = build_tracer_provider()
    assert (provider is not None) is provider_expected
    if provider is not None:
        provider.shutdown()


@pytest.mark.parametrize(
    ("protocol", "message"),
    [("grpc", "opentelemetry-exporter-otlp-proto-grpc"), ("http/json", "http/protobuf")],
)
def test_unsupported_protocols_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, protocol: str, message: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    # The lock file does not include the gRPC exporter; if someone adds it, this case must change.
    assert not (
        protocol == "grpc" and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc")
    )
    with pytest.raises(ConfigError, match=message):
        build_tracer_provider()


async def _collect_otlp(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes, str]]:
    received: list[tuple[str, bytes, str]] = []

    async def traces(request: web.Request) -> web.Response:
        received.append((request.path, await request.read(), request.content_type))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        provider = build_tracer_provider()
        assert provider is not None
        tracing = Tracing(provider, provider_name="vllm", upstream_url="http://10.0.0.5:8000")
        headers = [(b"traceparent", TRACEPARENT.encode())]
        run_session(tracing.session_span(headers, "sess-1", "acme", "127.0.0.1:4000"))
        # The exporter posts from the batch processor's thread; the loop must keep serving.
        flushed = await asyncio.to_thread(provider.force_flush, int(scaled(10) * 1000))
        await asyncio.to_thread(provider.shutdown)
        assert flushed
    finally:
        await runner.cleanup()
    return received


def test_spans_arrive_over_otlp_http(monkeypatch: pytest.MonkeyPatch) -> None:
    received = asyncio.run(_collect_otlp(monkeypatch))
    assert received and {(path, kind) for path, _, kind in received} == {
        ("/v1/traces", "application/x-protobuf")
    }
    spans: dict[str, Any] = {}
    for _, body, _ in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            assert resource["service.name"] == "ai-stream-sidecar"
            for scope_spans in resource_spans.scope_spans:
                spans.update({s.name: s for s in scope_spans.spans})
    assert sorted(spans) == ["chat sim-small", "sidecar.session", "text_completion sim-large"]
    assert {s.trace_id.hex() for s in spans.values()} == {CLIENT_TRACE_ID}
    session_id = spans["sidecar.session"].span_id
    assert spans["chat sim-small"].parent_span_id == session_id
    attrs = {kv.key: kv.value for kv in spans["text_completion sim-large"].attributes}
    assert attrs["sidecar.outcome"].string_value == "client_cancelled"
    assert attrs["gen_ai.usage.output_tokens"].int_value == 3
    assert attrs["sidecar.wasted_tokens"].int_value == 1


# HTTP instrumentation -----------------------------------------------------------------------


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def _call(app: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def _chunked(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        for _ in range(50):
            await send({"type": "websocket.send", "text": "x"})
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(50):
        await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _scope(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "method": "POST",
        "path": "/v1/chat/completions" if kind == "http" else "/v1/stream",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"host", b"sidecar"), (b"traceparent", TRACEPARENT.encode())],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 4000),
    }


def test_http_requests_get_one_span_websockets_none(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    app = instrument_http(_chunked, provider)
    body = [{"type": "http.request", "body": b"{}", "more_body": False}]
    sent = asyncio.run(_call(app, _scope("http"), body))
    assert len(sent) == 52
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST /v1/chat/completions"
    assert format(span.context.trace_id, "032x") == CLIENT_TRACE_ID
    exporter.clear()
    sent = asyncio.run(_call(app, _scope("websocket"), [{"type": "websocket.connect"}]))
    assert len(sent) == 50 and exporter.get_finished_spans() == ()


def test_instrument_http_without_tracing_is_the_app() -> None:
    assert instrument_http(_chunked, None) is _chunked


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("false", False), ("NO_CONTENT", False), ("true", True), ("SPAN_ONLY", True)],
)
def test_capture_content_switch(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    assert capture_content_from_env() is expected


def test_otlp_by_name_uses_the_default_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    provider = build_tracer_provider(console=True)
    assert provider is not None
    try:
        assert [type(e) for e in exporters(provider)] == [OTLPSpanExporter, ConsoleSpanExporter]
    finally:
        provider.shutdown()


def test_unknown_exporter_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="zipkin"):
        build_tracer_provider()
