"""Where a client's credential may be, and a scope with every trace of it removed.

Browsers cannot set headers on a WebSocket, so besides `Authorization: Bearer <token>` the
sidecar accepts the token as a `Sec-WebSocket-Protocol` entry `bearer.<token>` and as a
`token` / `api_key` query parameter (docs/security.md weighs the trade-offs). First found wins,
in that order.

Whatever the source, `scrubbed` returns a copy of the ASGI scope without it (no header, no
subprotocol entry, no query parameter), so nothing downstream — spans, logs, the session —
can record it; with auth on it also pins the tenant to the credential's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode

BEARER_SUBPROTOCOL: Final = "bearer."
# What a browser offers next to its token, and what the sidecar echoes: echoing the token
# entry itself would be legal, but would put the token in the response headers.
SUBPROTOCOL: Final = "sidecar.v1"
QUERY_KEYS: Final = ("token", "api_key")
# Scope key of the API key id that admitted a connection (not a secret): revocation closes it.
KEY_ID: Final = "sidecar.key_id"
EXPIRES_AT: Final = "sidecar.expires_at"  # the admitting token's expiry, Unix time
MAX_TOKEN: Final = 8192

Source = Literal["header", "subprotocol", "query"]


@dataclass(frozen=True, slots=True)
class Credential:
    token: str
    source: Source

    def __repr__(self) -> str:  # never print the token
        return f"Credential(source={self.source!r})"


def header_values(scope: dict[str, Any], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name]


def offered_subprotocols(scope: dict[str, Any]) -> list[str]:
    offered = scope.get("subprotocols")
    if offered is not None:
        return [str(p) for p in offered]
    entries: list[str] = []
    for value in header_values(scope, b"sec-websocket-protocol"):
        entries.extend(p.strip() for p in value.split(",") if p.strip())
    return entries


def _query(scope: dict[str, Any]) -> list[tuple[str, str]]:
    raw = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []


def extract(scope: dict[str, Any]) -> Credential | None:
    for value in header_values(scope, b"authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return _bounded(token.strip(), "header")
    if scope.get("type") == "websocket":
        for entry in offered_subprotocols(scope):
            if entry.lower().startswith(BEARER_SUBPROTOCOL) and len(entry) > len(
                BEARER_SUBPROTOCOL
            ):
                return _bounded(entry[len(BEARER_SUBPROTOCOL) :], "subprotocol")
    for key, value in _query(scope):
        if key in QUERY_KEYS and value:
            return _bounded(value, "query")
    return None


def _bounded(token: str, source: Source) -> Credential:
    return Credential(token[:MAX_TOKEN], source)


def scrubbed(
    scope: dict[str, Any],
    tenant: str | None,
    key_id: str | None = None,
    expires_at: float | None = None,
) -> dict[str, Any]:
    """A copy of `scope` without credentials; `tenant` (when given) replaces any the client
    chose, as the `X-Sidecar-Tenant` header the session reads; `key_id` (an API key's public
    id) goes in as `scope[KEY_ID]`, a token's expiry as `scope[EXPIRES_AT]`."""
    strip_query = {*QUERY_KEYS, *(("tenant",) if tenant is not None else ())}
    drop = {b"authorization", b"sec-websocket-protocol"}
    if tenant is not None:
        drop.add(b"x-sidecar-tenant")
    headers = [(k, v) for k, v in scope.get("headers", ()) if k not in drop]
    new = dict(scope)
    if scope.get("type") == "websocket":
        kept = [p for p in offered_subprotocols(scope) if not _is_bearer(p)]
        new["subprotocols"] = kept
        if kept:
            headers.append(
                (b"sec-websocket-protocol", ", ".join(kept).encode("latin-1", "replace"))
            )
    if tenant is not None:
        headers.append((b"x-sidecar-tenant", tenant.encode("latin-1", "replace")))
    new["headers"] = headers
    if key_id is not None:
        new[KEY_ID] = key_id
    if expires_at is not None:
        new[EXPIRES_AT] = expires_at
    pairs = _query(scope)
    if any(k in strip_query for k, _ in pairs):
        new["query_string"] = urlencode([(k, v) for k, v in pairs if k not in strip_query]).encode(
            "latin-1", "replace"
        )
    return new


def _is_bearer(entry: str) -> bool:
    return entry.lower().startswith(BEARER_SUBPROTOCOL)


def chosen_subprotocol(scope: dict[str, Any]) -> str | None:
    """The subprotocol to echo on accept: `sidecar.v1` when the client offered it."""
    return SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(scope) else None
