"""Counters for refusals at the edge, registered on the server's injected registry.

- `sidecar_auth_failures_total{reason}`: a client was refused before its upgrade or request
  (no or bad credential, disallowed origin).
- `sidecar_limit_hits_total{limit}`: a limit bit (connections, frame size, message rate,
  handshake or idle timeout, max_tokens, daily budget, streams per connection).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter

AUTH_FAILURES: Final = "sidecar_auth_failures_total"
LIMIT_HITS: Final = "sidecar_limit_hits_total"

AUTH_REASONS: Final = (
    "missing_credential",
    "invalid_api_key",
    "revoked_api_key",
    "malformed_token",
    "unsupported_algorithm",
    "unknown_key",
    "invalid_signature",
    "expired_token",
    "token_not_yet_valid",
    "invalid_audience",
    "invalid_issuer",
    "missing_claim",
    "no_tenant",
    "origin_not_allowed",
)
LIMITS: Final = (
    "connections_total",
    "connections_per_tenant",
    "frame_size",
    "message_rate",
    "handshake_timeout",
    "body_timeout",
    "idle_timeout",
    "max_tokens",
    "daily_budget",
    "streams_per_connection",
)


class SecurityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.auth_failures = Counter(
            AUTH_FAILURES.removesuffix("_total"),
            "Clients refused before the upgrade or request, by reason.",
            ["reason"],
            registry=registry,
        )
        self.limit_hits = Counter(
            LIMIT_HITS.removesuffix("_total"),
            "Times a limit refused a connection, a message or a stream, by limit.",
            ["limit"],
            registry=registry,
        )
        for reason in AUTH_REASONS:  # exported at 0 from the start: rate() sees the first one
            self.auth_failures.labels(reason)
        for limit in LIMITS:
            self.limit_hits.labels(limit)

    def refused(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def limited(self, limit: str) -> None:
        self.limit_hits.labels(limit).inc()
