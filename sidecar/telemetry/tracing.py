"""Tracing set-up: a tracer provider from the standard `OTEL_*` variables, and HTTP instrumentation.

Nothing is exported unless asked for: OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or `OTEL_TRACES_EXPORTER=otlp`), the console when
`console=True` (or `OTEL_TRACES_EXPORTER=console`). Without an exporter there is no provider at
all, and `Tracing(None)` hands out no-op spans. Exporters run behind a `BatchSpanProcessor`, so
ending a span is a queue append and the relay never waits for a collector.

The provider is returned, never installed globally: it is injected like the metrics registry.
The span API itself lives in `sidecar.telemetry.spans` and is re-exported here.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from sidecar.errors import ConfigError
from sidecar.telemetry.spans import NOOP_SESSION, NOOP_STREAM, SessionTrace, StreamTrace, Tracing

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "NOOP_SESSION",
    "NOOP_STREAM",
    "SessionTrace",
    "StreamTrace",
    "Tracing",
    "build_tracer_provider",
    "capture_content_from_env",
    "instrument_http",
]

DEFAULT_SERVICE_NAME = "ai-stream-sidecar"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_GRPC_PACKAGE = "opentelemetry-exporter-otlp-proto-grpc"
_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def build_tracer_provider(console: bool = False) -> TracerProvider | None:
    """A provider with the exporters the environment asks for, or None when there are none.

    Sampling (`OTEL_TRACES_SAMPLER`), batching (`OTEL_BSP_*`), headers, timeouts and TLS
    (`OTEL_EXPORTER_OTLP_*`) are read by the SDK itself. Call `provider.shutdown()` (in a thread:
    it blocks while it flushes) when the server stops.
    """
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return None
    exporters = [_exporter(name) for name in _exporter_names(console)]
    if not exporters:
        return None
    provider = TracerProvider(resource=_resource())
    for exporter in exporters:
        batch, delay = _batching()
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_export_batch_size=batch, schedule_delay_millis=delay)
        )
    return provider


def _batching() -> tuple[int | None, float | None]:
    """Smaller, more frequent export batches than the SDK's 512 spans every 5 s, unless the
    `OTEL_BSP_*` variables say otherwise: encoding a batch holds the GIL, and the relay's event
    loop waits behind it. Measured side by side at 200 streams with an OTLP receiver on loopback:
    added TTFT p99 64-72 ms with the SDK's defaults, 22 ms with 64 spans every 500 ms, at the
    same CPU per token. None: the SDK reads the variable itself."""
    batch = None if _env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else 64
    delay = None if _env("OTEL_BSP_SCHEDULE_DELAY") else 500.0
    return batch, delay


def _exporter_names(console: bool) -> list[str]:
    configured = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    if not configured:  # the SDK's default is otlp to localhost; ours is off unless pointed
        configured = ["otlp"] if any(_env(name) for name in _ENDPOINTS) else []
    names = [n for n in configured if n != "none"]
    if console and "console" not in names:
        names.append("console")
    return names


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: supported are otlp, console, none")
    protocol = next((_env(v) for v in _PROTOCOLS if _env(v)), "http/protobuf")
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs `pip install {_GRPC_PACKAGE}`; "
                "or use http/protobuf (port 4318)"
            ) from None
        exporter: SpanExporter = GrpcSpanExporter()
        return exporter
    raise ConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: supported are http/protobuf and grpc"
    )


def capture_content_from_env() -> bool:
    """The GenAI instrumentations' switch for prompt/completion text on spans (off by default).

    Accepts the older `true` and the newer `SPAN_ONLY`/`SPAN_AND_EVENT` spellings.
    """
    return _env(_CAPTURE_CONTENT).lower() in ("true", "span_only", "span_and_event")


def _resource() -> Resource:
    """`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` win; otherwise our own service name."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


class _HttpOnly:
    """ASGI wrapper: HTTP requests go through the OpenTelemetry middleware, WebSockets do not.

    On a WebSocket the middleware would make a span per frame sent and received (thousands per
    stream); sessions get their own spans from `Tracing.session_span` instead.
    """

    def __init__(self, app: Any, traced: Any) -> None:
        self.app, self.traced = app, traced

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.traced(scope, receive, send)
        else:
            call = self.app(scope, receive, send)
            # This frame lives as long as a WebSocket: it must not keep the scope, whose
            # headers the session lets go of after the handshake.
            del scope
            await call


def instrument_http(app: Any, provider: TracerProvider | None) -> Any:
    """`app` with one server span per HTTP request (none per body chunk); as is without tracing."""
    if provider is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    traced = OpenTelemetryMiddleware(
        app,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),  # metrics are Prometheus's job, on our registry
        exclude_spans=["receive", "send"],
    )
    return _HttpOnly(app, traced)
