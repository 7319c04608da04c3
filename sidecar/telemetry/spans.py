"""Session and stream spans (DESIGN §6), behind an injected `Tracing` object.

The session code calls these objects a handful of times per stream (start, first token, end) and
never per token, so tracing adds nothing to the relay's hot path. Without a tracer provider every
call returns or acts on one shared no-op object: no span, no context, no allocation.

Spans are never made current (`use_span`/`attach`): the relay runs many streams as tasks on one
loop, and an explicit parent is cheaper and cannot leak a context into a neighbour's task.
The only exception is `Tracing.http_stream`, whose parent is the span that the ASGI middleware
made current for that HTTP request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.telemetry import attributes as a
from sidecar.telemetry.content import input_messages, output_messages

# The W3C header pair a client sends on its upgrade request and the sidecar sends upstream.
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}
# Outcomes that are a failure of the sidecar or the model server, not a user's choice: only these
# mark the stream span as an error, so pressing "stop" does not fill error dashboards.
_FAILURES = frozenset(
    {
        Outcome.UPSTREAM_ERROR,
        Outcome.TIMEOUT,
        Outcome.INTERRUPTED,
        Outcome.REJECTED,
        Outcome.SHUTDOWN,
        Outcome.INTERNAL_ERROR,
    }
)
_NUMERIC_REQUEST = (
    (a.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
    (a.GEN_AI_REQUEST_TOP_P, "top_p"),
)


class StreamTrace:
    """One stream's span. This base class is the no-op; `Tracing` hands out the recording one."""

    __slots__ = ()

    @property
    def trace_id_hex(self) -> str | None:
        """32 hex digits for the `start` frame and the ledger row; None when not tracing."""
        return None

    @property
    def capture_content(self) -> bool:
        """Whether `end(output_text=...)` is recorded: only then is the text worth collecting."""
        return False

    def inject(self, headers: dict[str, str]) -> None:
        """Add `traceparent` (and `tracestate`) for the upstream request."""

    def first_token(self, ttft_s: float) -> None:
        """The first content delta was relayed `ttft_s` after the request went upstream.

        Optional: `end` records it from the account's timestamps when this was never called.
        """

    def client_gone(self) -> None:
        """Nobody listens any more (cancel, closed or vanished socket, client too slow)."""

    def upstream_cancelled(self, seconds: float) -> None:
        """The upstream response was closed `seconds` after the client went away."""

    def end(self, account: StreamAccount, output_text: str | None = None) -> None:
        """Record the accounting of an ended `account` and end the span (once)."""


class SessionTrace:
    """One WebSocket session's span; this base class is the no-op."""

    __slots__ = ()

    @property
    def trace_id_hex(self) -> str | None:
        """The session's trace (its streams' spans are its children); None when not tracing."""
        return None

    def stream_started(
        self, account: StreamAccount, request_body: Mapping[str, Any]
    ) -> StreamTrace:
        return NOOP_STREAM

    def heartbeat_missed(self) -> None:
        """A pong missed its deadline."""

    def upstream_heartbeat(self, rtt: float) -> None:
        """A realtime session's upstream WebSocket answered a ping in `rtt` seconds."""

    def end(
        self,
        rtt_p50: float | None,
        rtt_max: float | None,
        missed: int,
        disconnect_reason: str | None,
    ) -> None:
        """End the session span (once) with its heartbeat summary and why it ended."""


NOOP_STREAM = StreamTrace()
NOOP_SESSION = SessionTrace()


@dataclass(frozen=True, slots=True)
class _Settings:
    tracer: trace.Tracer
    provider_name: str
    server_address: str | None
    server_port: int | None
    capture_content: bool


class Tracing:
    """Factory for session and stream spans; built once per process and injected.

    `provider_name` is the upstream flavour (`vllm`, `openai`, ...) for `gen_ai.provider.name`;
    `upstream_url` gives `server.address`/`server.port`. Prompt and completion text go on spans
    only with `capture_content=True`.
    """

    __slots__ = ("_settings",)

    def __init__(
        self,
        provider: trace.TracerProvider | None,
        *,
        provider_name: str = "openai",
        upstream_url: str | None = None,
        capture_content: bool = False,
    ) -> None:
        self._settings: _Settings | None = None
        if provider is not None:
            address, port = _server(upstream_url)
            tracer = provider.get_tracer("sidecar")
            self._settings = _Settings(tracer, provider_name, address, port, capture_content)

    @property
    def enabled(self) -> bool:
        return self._settings is not None

    def session_span(
        self,
        scope_headers: Iterable[tuple[bytes, bytes]],
        session_id: str,
        tenant: str,
        client_addr: str | None,
    ) -> SessionTrace:
        """Start a session span, continuing the client's `traceparent` if it sent one."""
        settings = self._settings
        if settings is None:
            return NOOP_SESSION
        carrier = {
            _TRACE_HEADERS[k]: v.decode("latin-1") for k, v in scope_headers if k in _TRACE_HEADERS
        }
        # No traceparent: a new trace, whatever context happens to be current.
        parent = _PROPAGATOR.extract(carrier) if carrier else Context()
        attrs: dict[str, Any] = {a.GEN_AI_CONVERSATION_ID: session_id, a.TENANT: tenant}
        if client_addr:
            host, _, port = client_addr.rpartition(":")
            attrs[a.CLIENT_ADDRESS] = host or port
            if host and port.isdigit():
                attrs[a.CLIENT_PORT] = int(port)
        span = settings.tracer.start_span(
            a.SESSION_SPAN, context=parent, kind=SpanKind.SERVER, attributes=attrs
        )
        return _RecordingSession(settings, span)

    def http_stream(self, account: StreamAccount, request_body: Mapping[str, Any]) -> StreamTrace:
        """A stream of the HTTP ingress: child of the request span the ASGI middleware made."""
        if self._settings is None:
            return NOOP_STREAM
        return _start_stream(self._settings, None, account, request_body)


class _RecordingSession(SessionTrace):
    __slots__ = ("_ended", "_settings", "_span", "_streams")

    def __init__(self, settings: _Settings, span: Span) -> None:
        self._settings, self._span = settings, span
        self._streams = 0
        self._ended = False

    @property
    def trace_id_hex(self) -> str | None:
        return format(self._span.get_span_context().trace_id, "032x")

    def stream_started(
        self, account: StreamAccount, request_body: Mapping[str, Any]
    ) -> StreamTrace:
        self._streams += 1
        # The parent context is built per stream, not kept: an idle session should hold
        # nothing but its span.
        parent = trace.set_span_in_context(self._span)
        return _start_stream(self._settings, parent, account, request_body)

    def heartbeat_missed(self) -> None:
        if not self._ended:
            self._span.add_event(a.EVENT_HEARTBEAT_MISSED)

    def upstream_heartbeat(self, rtt: float) -> None:
        if not self._ended:
            self._span.set_attribute(a.UPSTREAM_HEARTBEAT_RTT, rtt)

    def end(
        self,
        rtt_p50: float | None,
        rtt_max: float | None,
        missed: int,
        disconnect_reason: str | None,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        attrs: dict[str, Any] = {a.SESSION_STREAMS: self._streams, a.HEARTBEAT_MISSED: missed}
        if rtt_p50 is not None:
            attrs[a.HEARTBEAT_RTT_P50] = rtt_p50
        if rtt_max is not None:
            attrs[a.HEARTBEAT_RTT_MAX] = rtt_max
        if disconnect_reason is not None:
            attrs[a.DISCONNECT_REASON] = disconnect_reason
        self._span.set_attributes(attrs)
        self._span.end()


class _RecordingStream(StreamTrace):
    __slots__ = ("_ended", "_first_seen", "_request_body", "_settings", "_span", "_start_ns")

    def __init__(
        self, settings: _Settings, span: Span, start_ns: int, request_body: Mapping[str, Any]
    ) -> None:
        self._settings, self._span, self._start_ns = settings, span, start_ns
        self._ended = self._first_seen = False
        self._request_body = request_body  # kept only to render content at the end, if asked

    @property
    def trace_id_hex(self) -> str | None:
        return format(self._span.get_span_context().trace_id, "032x")

    @property
    def capture_content(self) -> bool:
        return self._settings.capture_content

    def inject(self, headers: dict[str, str]) -> None:
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(self._span))

    def first_token(self, ttft_s: float, timestamp_ns: int | None = None) -> None:
        if self._ended or self._first_seen:
            return
        self._first_seen = True
        self._span.set_attribute(a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttft_s)
        attrs = {a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: ttft_s}
        self._span.add_event(a.EVENT_FIRST_TOKEN, attrs, timestamp=timestamp_ns)

    def client_gone(self) -> None:
        if not self._ended:
            self._span.add_event(a.EVENT_CLIENT_GONE)

    def upstream_cancelled(self, seconds: float) -> None:
        if not self._ended:
            self._span.set_attribute(a.UPSTREAM_CANCEL_SECONDS, seconds)
            self._span.add_event(a.EVENT_UPSTREAM_CANCELLED, {a.UPSTREAM_CANCEL_SECONDS: seconds})

    def end(self, account: StreamAccount, output_text: str | None = None) -> None:
        if self._ended:
            return
        ttft = account.time_to_first_token
        if ttft is not None and not self._first_seen:  # the span started with `t_start`
            self.first_token(ttft, self._start_ns + round(ttft * 1e9))
        self._ended = True
        outcome = account.outcome or Outcome.INTERRUPTED
        attrs: dict[str, Any] = {
            a.GEN_AI_USAGE_INPUT_TOKENS: account.prompt_tokens,
            a.GEN_AI_USAGE_OUTPUT_TOKENS: account.generated_tokens,
            a.DELIVERED_TOKENS: account.delivered_tokens,
            a.WASTED_TOKENS: account.wasted_tokens,
            a.OUTCOME: outcome.value,
            a.COUNT_SOURCE: account.count_source.value,
        }
        if account.malformed:
            attrs[a.UPSTREAM_MALFORMED] = account.malformed
        if account.cached_prompt_tokens is not None:
            attrs[a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = account.cached_prompt_tokens
        if account.reasoning_tokens is not None:
            attrs[a.REASONING_TOKENS] = account.reasoning_tokens
        if account.audio_prompt_tokens is not None:
            attrs[a.AUDIO_INPUT_TOKENS] = account.audio_prompt_tokens
        if account.audio_generated_tokens is not None:
            attrs[a.AUDIO_OUTPUT_TOKENS] = account.audio_generated_tokens
        if account.finish_reason:
            attrs[a.GEN_AI_RESPONSE_FINISH_REASONS] = (account.finish_reason,)
        if self._settings.capture_content:
            attrs[a.GEN_AI_INPUT_MESSAGES] = input_messages(account.path, self._request_body)
            if output_text is not None:
                reason = account.finish_reason or outcome.value
                attrs[a.GEN_AI_OUTPUT_MESSAGES] = output_messages(output_text, reason)
        if outcome is not Outcome.COMPLETED:
            attrs[a.ERROR_TYPE] = account.error_code or outcome.value
            if outcome in _FAILURES:
                self._span.set_status(Status(StatusCode.ERROR, attrs[a.ERROR_TYPE]))
        self._span.set_attributes(attrs)
        self._span.end()


# gen_ai.operation.name by route; the Responses and Messages APIs are chat.
OPERATIONS = {"/v1/completions": a.OP_TEXT_COMPLETION, "/v1/embeddings": a.OP_EMBEDDINGS}


def _start_stream(
    settings: _Settings,
    parent: Context | None,
    account: StreamAccount,
    body: Mapping[str, Any],
) -> _RecordingStream:
    operation = OPERATIONS.get(account.path, a.OP_CHAT)
    attrs: dict[str, Any] = {
        a.GEN_AI_OPERATION_NAME: operation,
        a.GEN_AI_PROVIDER_NAME: settings.provider_name,
        a.GEN_AI_REQUEST_MODEL: account.model,
        a.GEN_AI_REQUEST_STREAM: operation != a.OP_EMBEDDINGS,
        a.TENANT: account.tenant,
        a.INGRESS: account.ingress,
        a.REQUEST_ID: account.request_id,
        a.STREAM_ID: account.stream_id,
    }
    if account.session_id is not None:
        attrs[a.GEN_AI_CONVERSATION_ID] = account.session_id
    if settings.server_address is not None:
        attrs[a.SERVER_ADDRESS] = settings.server_address
    if settings.server_port is not None:
        attrs[a.SERVER_PORT] = settings.server_port
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = body.get("max_output_tokens")  # the Responses API's
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[a.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    for key, field in _NUMERIC_REQUEST:
        value = body.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[key] = value
    start_ns = time.time_ns()
    span = settings.tracer.start_span(
        f"{operation} {account.model}",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes=attrs,
        start_time=start_ns,
    )
    return _RecordingStream(settings, span, start_ns, body if settings.capture_content else {})


def _server(url: str | None) -> tuple[str | None, int | None]:
    if not url:
        return None, None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None and parts.scheme in ("http", "https"):
        port = 443 if parts.scheme == "https" else 80
    return parts.hostname, port
