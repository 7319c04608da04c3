"""Security and limits at the edge (docs/security.md).

credentials → auth (apikeys, jwt) → gate (origin, credential, connection limits, message rate)
→ the client app; handshake (request-head timeout), limits (pure limit state machines), redact
(secrets out of logs and errors), metrics (refusal counters), edge (wiring from settings).
"""
