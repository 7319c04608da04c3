"""Span names, attribute keys and event names: the tracing contract of DESIGN §6, in one place.

GenAI keys follow the OpenTelemetry GenAI semantic conventions (still "Development"). They are
spelled out here rather than imported from `opentelemetry.semconv._incubating`, a private module
whose names move between releases.
The deprecated `gen_ai.system` and `gen_ai.usage.prompt_tokens`/`completion_tokens` are never used.
What the conventions do not cover is under `sidecar.*`.
"""

from typing import Final

# Span names. A stream span is named `{gen_ai.operation.name} {gen_ai.request.model}`.
SESSION_SPAN: Final = "sidecar.session"

# Operation names (values of gen_ai.operation.name).
OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_EMBEDDINGS: Final = "embeddings"

# GenAI semantic conventions.
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
# Content: only with capture_content=True (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT).
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"

# General semantic conventions.
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
CLIENT_PORT: Final = "client.port"

# Sidecar attributes: accounting on the stream span.
DELIVERED_TOKENS: Final = "sidecar.delivered_tokens"
WASTED_TOKENS: Final = "sidecar.wasted_tokens"
OUTCOME: Final = "sidecar.outcome"
COUNT_SOURCE: Final = "sidecar.count_source"
TENANT: Final = "sidecar.tenant"
INGRESS: Final = "sidecar.ingress"
REQUEST_ID: Final = "sidecar.request_id"  # the client's id for the stream
STREAM_ID: Final = "sidecar.stream_id"  # the sidecar's id, sent upstream as X-Request-Id
UPSTREAM_CANCEL_SECONDS: Final = "sidecar.upstream_cancel_seconds"
UPSTREAM_MALFORMED: Final = "sidecar.upstream.malformed_events"
REASONING_TOKENS: Final = "sidecar.usage.reasoning_tokens"  # of the output, where reported
AUDIO_INPUT_TOKENS: Final = "sidecar.usage.audio_input_tokens"  # realtime, where reported
AUDIO_OUTPUT_TOKENS: Final = "sidecar.usage.audio_output_tokens"  # realtime, where reported
UPSTREAM_HEARTBEAT_RTT: Final = "sidecar.upstream.heartbeat_rtt_seconds"  # realtime session

# Sidecar attributes: the session span, set when it ends.
SESSION_STREAMS: Final = "sidecar.session.streams"
HEARTBEAT_RTT_P50: Final = "sidecar.heartbeat.rtt_p50_seconds"
HEARTBEAT_RTT_MAX: Final = "sidecar.heartbeat.rtt_max_seconds"
HEARTBEAT_MISSED: Final = "sidecar.heartbeat.missed"
DISCONNECT_REASON: Final = "sidecar.disconnect_reason"

# Events.
EVENT_FIRST_TOKEN: Final = "sidecar.first_token"
EVENT_CLIENT_GONE: Final = "sidecar.client_gone"
EVENT_UPSTREAM_CANCELLED: Final = "sidecar.upstream_cancelled"
EVENT_HEARTBEAT_MISSED: Final = "sidecar.heartbeat_missed"
