"""Metric names and labels: the public contract of DESIGN §6, in one place.

Dashboards, alert rules and docs/metrics.md are generated from or checked against these.
"""

from typing import Final

SESSIONS_ACTIVE: Final = "sidecar_sessions_active"
STREAMS: Final = "sidecar_streams"  # counter; exposed as sidecar_streams_total
TOKENS: Final = "sidecar_tokens"  # counter; sidecar_tokens_total{model,tenant,kind}
COST_USD: Final = "sidecar_cost_usd"  # counter; sidecar_cost_usd_total{model,tenant,kind}
TIME_TO_FIRST_TOKEN: Final = "sidecar_time_to_first_token_seconds"
INTER_TOKEN_LATENCY: Final = "sidecar_inter_token_latency_seconds"
STREAM_DURATION: Final = "sidecar_stream_duration_seconds"
HEARTBEAT_RTT: Final = "sidecar_heartbeat_rtt_seconds"
HEARTBEAT_MISSED: Final = "sidecar_heartbeat_missed"  # counter; sidecar_heartbeat_missed_total
DISCONNECTS: Final = "sidecar_disconnects"  # counter; sidecar_disconnects_total{reason}
UPSTREAM_CANCEL: Final = "sidecar_upstream_cancel_seconds"
LEDGER_QUEUE_DEPTH: Final = "sidecar_ledger_queue_depth"
LEDGER_SPOOLED_ROWS: Final = "sidecar_ledger_spooled_rows"
LEDGER_WRITE_ERRORS: Final = "sidecar_ledger_write_errors"  # counter
LEDGER_DEAD_LETTER_ROWS: Final = "sidecar_ledger_dead_letter_rows"  # counter
DRIFT_P95: Final = "sidecar_drift_p95_seconds"  # gauge {model,signal,window}
DRIFT_ALERT_ACTIVE: Final = "sidecar_drift_alert_active"  # gauge {model,signal}
UNPRICED_STREAMS: Final = "sidecar_unpriced_streams"  # counter {model}
INTERNAL_ERRORS: Final = "sidecar_internal_errors"  # counter; streams ended by a sidecar fault
BREAKER_OPEN: Final = "sidecar_upstream_breaker_open"  # gauge; 1 while new streams are refused
UPSTREAM_MALFORMED: Final = "sidecar_upstream_malformed"  # counter {model}; unparsable events
ROUTE_STREAMS: Final = "sidecar_route_streams"  # counter {route,ingress}
ROUTE_TOKENS: Final = "sidecar_route_tokens"  # counter {route,ingress,kind}
UNACCOUNTED_REQUESTS: Final = "sidecar_unaccounted_requests"  # counter {route}; passed through
# counter {route}: unaccounted requests refused by --passthrough-routes
PASSTHROUGH_REFUSED: Final = "sidecar_passthrough_refused_requests"
BUILD_INFO: Final = "sidecar_build_info"  # gauge, always 1 {version,python_version,...}

# Label values that dashboards and rules rely on.
TOKEN_KINDS: Final = ("prompt", "generated", "delivered", "wasted")
COST_KINDS: Final = TOKEN_KINDS  # cost of the prompt, of what was generated, delivered, wasted
OUTCOMES: Final = (
    "completed",
    "client_cancelled",
    "client_gone",
    "client_too_slow",
    "upstream_error",
    "timeout",
    "rejected",
    "shutdown",
    "interrupted",
    "internal_error",
)
DISCONNECT_REASONS: Final = (
    "client_closed",
    "heartbeat_timeout",
    "send_timeout",
    "client_too_slow",
    "server_drain",
    "protocol_error",
    "idle_timeout",
    "key_revoked",
    "token_expired",
    "upstream_closed",  # a realtime session's model server ended it
)
DRIFT_SIGNALS: Final = ("ttft", "itl", "heartbeat_rtt", "upstream_cancel")
DRIFT_WINDOWS: Final = ("short", "medium", "baseline")
# The `route` label of the accounted routes, by path (anything else: `other`).
ROUTE_LABELS: Final = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/embeddings": "embeddings",
    "/v1/realtime": "realtime",
}
INGRESSES: Final = ("ws", "http", "realtime")
# API families of the `/v1/*` requests passed through unaccounted (OpenAI, Anthropic, vLLM,
# SGLang): `sidecar_unaccounted_requests_total{route}` is `/v1/<family>` or `other`.
PASSTHROUGH_FAMILIES: Final = (
    "models",
    "files",
    "batches",
    "uploads",
    "audio",
    "images",
    "moderations",
    "fine_tuning",
    "vector_stores",
    "assistants",
    "threads",
    "conversations",
    "responses",
    "messages",
    "chat",
    "completions",
    "embeddings",
    "tokenize",
    "detokenize",
    "rerank",
    "score",
    "classify",
    "pooling",
)
OTHER_ROUTE: Final = "other"
OTHER_TENANT: Final = "other"
OTHER_MODEL: Final = "other"
MAX_MODEL_LABELS: Final = 64
