"""The edge gate: an ASGI wrapper in front of the client app.

For a WebSocket it decides before the upgrade is accepted, in this order:
origin allowlist (403) → credential (401, or 403 for a valid token without a tenant) →
connections in total (503) and per tenant (429). A refusal is an HTTP response on the upgrade
request (the ASGI `websocket.http.response` extension; without it, `websocket.close` before
accept, which servers answer with 403), with a JSON body
`{"error": {"code": ..., "message": ...}}`; nothing was upgraded, nothing reached the app.

An admitted connection reaches the app with a scrubbed scope (no credential anywhere; with auth
on, the tenant pinned to the credential's), with `sidecar.v1` echoed when the client offered it,
and with its messages rate-limited: over the rate, a message is dropped and answered with an
`error` frame `rate_limited`; a client that keeps going is closed with 1008. The server closes a
client whose frame exceeds the size limit with 1009; the gate counts it.

HTTP requests get the same credential check (401 JSON with `WWW-Authenticate: Bearer`), and the
relay routes count as connections while they run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from sidecar.ingress.realtime import PATH as REALTIME_PATH
from sidecar.ingress.scope import tenant_of
from sidecar.security import credentials
from sidecar.security.auth import Authenticator, AuthRefusal, Principal
from sidecar.security.limits import ConnectionLimits, MessageRate, Refusal, Verdict
from sidecar.security.metrics import SecurityMetrics
from sidecar.upstream.routes import ROUTES

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# HTTP requests that hold a connection slot (connection limits): the accounted routes.
RELAY_ROUTES = frozenset(ROUTES)
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
SLOW_DOWN = "too many messages; slow down"
RATE_LIMITED = orjson.dumps(
    {"type": "error", "code": "rate_limited", "message": SLOW_DOWN}
).decode()
# The Realtime API's error event, which its clients parse (protocol v1's shape is not one).
REALTIME_RATE_LIMITED = orjson.dumps(
    {
        "type": "error",
        "error": {"type": "invalid_request_error", "code": "rate_limited", "message": SLOW_DOWN},
    }
).decode()


@dataclass(slots=True)
class GatePolicy:
    allowed_origins: frozenset[str] = frozenset()  # empty: any origin
    max_messages_per_second: float = 0.0  # 0: unlimited
    message_burst: float | None = None


@dataclass(slots=True)
class Gate:
    app: ASGIApp
    metrics: SecurityMetrics
    policy: GatePolicy = field(default_factory=GatePolicy)
    auth: Authenticator | None = None  # None: auth off, clients choose their tenant
    connections: ConnectionLimits = field(default_factory=lambda: ConnectionLimits(0, 0))
    clock: Callable[[], float] = time.monotonic
    # Called before authenticating an API key the cache does not know (a key created after the
    # last refresh); the edge rate-limits the database reads behind it.
    on_unknown_key: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _identify(self, scope: Scope) -> Principal | AuthRefusal | None:
        """None when auth is off."""
        if self.auth is None:
            return None
        credential = credentials.extract(dict(scope))
        result = self.auth.authenticate(credential)
        if (
            isinstance(result, AuthRefusal)
            and result.reason == "invalid_api_key"
            and self.on_unknown_key is not None
        ):
            await self.on_unknown_key()
            result = self.auth.authenticate(credential)
        return result

    # WebSocket ---------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        origin = _origin(scope)
        allowed = self.policy.allowed_origins
        if allowed and origin is not None and origin.rstrip("/") not in allowed:
            self.metrics.refused("origin_not_allowed")
            await _ws_refuse(scope, send, 403, "origin_not_allowed", "origin not allowed")
            return
        who = await self._identify(scope)
        if isinstance(who, AuthRefusal):
            self.metrics.refused(who.reason)
            await _ws_refuse(scope, send, who.status, who.reason, who.message, _challenge(who))
            return
        tenant = who.tenant if who is not None else _chosen_tenant(scope)
        refused = self.connections.acquire(tenant)
        if refused is not None:
            self.metrics.limited(_limit_name(refused))
            await _ws_refuse(scope, send, refused.status, refused.code, refused.message)
            return
        try:
            connection = _Connection(self, scope, receive, send, first)
            # No local keeps the app's scope: this frame lives as long as the connection,
            # and the app lets go of the scope's headers once it has accepted.
            await self.app(
                credentials.scrubbed(dict(scope), *_identity(who)),
                connection.receive,
                connection.send,
            )
        finally:
            self.connections.release(tenant)

    # HTTP --------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        who = await self._identify(scope)
        if isinstance(who, AuthRefusal):
            self.metrics.refused(who.reason)
            await _http_refuse(send, who.status, who.reason, who.message, _challenge(who))
            return
        inner = credentials.scrubbed(dict(scope), *_identity(who))
        if scope.get("path") not in RELAY_ROUTES:
            await self.app(inner, receive, send)
            return
        tenant = who.tenant if who is not None else _chosen_tenant(scope)
        refused = self.connections.acquire(tenant)
        if refused is not None:
            self.metrics.limited(_limit_name(refused))
            await _http_refuse(send, refused.status, refused.code, refused.message)
            return
        try:
            await self.app(inner, receive, send)
        finally:
            self.connections.release(tenant)


ACKS_PER_SECOND = 250.0  # at least: one ack per delta at the fastest model servers' rates
ACK_MAX_LENGTH = 160  # an ack frame is small; anything longer is charged as a message


def ack_budget(per_second: float) -> float:
    """Acks (or, on /v1/realtime, audio appends) per second a connection may send on top of
    `--max-messages-per-second`."""
    return max(ACKS_PER_SECOND, 4 * per_second)


AUDIO_APPEND = "input_audio_buffer.append"


def is_audio_append(text: str | None) -> bool:
    """Is this text frame a Realtime `input_audio_buffer.append`? A voice client sends one per
    20-100 ms of audio; parsed only when the name is in it."""
    if text is None or AUDIO_APPEND not in text:
        return False
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(frame, dict) and frame.get("type") == AUDIO_APPEND


def is_ack(text: str | None) -> bool:
    """Is this text frame a protocol-v1 `ack`? Cheap for everything else (no parse)."""
    if text is None or len(text) > ACK_MAX_LENGTH or '"ack"' not in text:
        return False
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(frame, dict) and frame.get("type") == "ack"


class _Connection:
    """Per-connection wrappers of `receive` and `send`."""

    __slots__ = (
        "closed",
        "data_rate",
        "first",
        "gate",
        "inner_receive",
        "inner_send",
        "is_data",
        "rate",
        "rate_limited",
        "subprotocol",
    )

    def __init__(
        self, gate: Gate, scope: Scope, receive: Receive, send: Send, first: dict[str, Any]
    ) -> None:
        self.gate = gate
        self.inner_receive, self.inner_send = receive, send
        self.first: dict[str, Any] | None = first
        per_second = gate.policy.max_messages_per_second
        self.rate = (
            MessageRate(per_second, gate.clock(), gate.policy.message_burst) if per_second else None
        )
        # Streaming messages have their own budget (`ack_budget`): acks on /v1/stream, audio
        # appends on /v1/realtime. A client acking what it rendered, or sending its microphone
        # in 20 ms frames, must not starve its own control messages, nor be cut off for it.
        realtime = scope.get("path") == REALTIME_PATH
        self.is_data = is_audio_append if realtime else is_ack
        acks = ack_budget(per_second)
        self.data_rate = MessageRate(acks, gate.clock()) if per_second else None
        self.subprotocol = credentials.chosen_subprotocol(dict(scope))
        self.closed = False
        self.rate_limited = REALTIME_RATE_LIMITED if realtime else RATE_LIMITED

    async def receive(self) -> dict[str, Any]:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        while True:
            message = await self.inner_receive()
            kind = message["type"]
            if kind == "websocket.receive" and self.rate is not None:
                rate = self.rate
                if self.data_rate is not None and self.is_data(message.get("text")):
                    rate = self.data_rate
                verdict = rate.check(self.gate.clock())
                if verdict is Verdict.ALLOW:
                    return message
                self.gate.metrics.limited("message_rate")
                if verdict is Verdict.DROP:
                    await self._try_send({"type": "websocket.send", "text": self.rate_limited})
                    continue
                await self._try_send(
                    {"type": "websocket.close", "code": CLOSE_POLICY, "reason": "rate limit"}
                )
                return {"type": "websocket.disconnect", "code": CLOSE_POLICY}
            if kind == "websocket.disconnect" and message.get("code") == CLOSE_TOO_BIG:
                self.gate.metrics.limited("frame_size")
            return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept" and self.subprotocol and not message.get("subprotocol"):
            message = {**message, "subprotocol": self.subprotocol}
        elif kind == "websocket.close":
            self.closed = True
        await self.inner_send(message)

    async def _try_send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if message["type"] == "websocket.close":
            self.closed = True
        try:
            await self.inner_send(message)
        except (OSError, RuntimeError):  # the connection is already gone
            self.closed = True


def _identity(who: Principal | None) -> tuple[str | None, str | None, float | None]:
    """(tenant, API key id, token expiry) for the scrubbed scope; all None with auth off."""
    return (who.tenant, who.key_id, who.expires_at) if who is not None else (None, None, None)


def _origin(scope: Scope) -> str | None:
    values = credentials.header_values(dict(scope), b"origin")
    return values[0] if values else None


def _chosen_tenant(scope: Scope) -> str:
    """With auth off: the tenant the client names, read as the session reads it."""
    return tenant_of(cast(dict[str, Any], scope))


def _limit_name(refused: Refusal) -> str:
    return "connections_total" if refused.status == 503 else "connections_per_tenant"


def _challenge(refused: AuthRefusal) -> list[tuple[bytes, bytes]]:
    if refused.status != 401:
        return []
    error = "invalid_request" if refused.reason == "missing_credential" else "invalid_token"
    return [(b"www-authenticate", f'Bearer realm="sidecar", error="{error}"'.encode())]


def _body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def _headers(body: bytes, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    return headers


async def _ws_refuse(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CLOSE_POLICY})  # servers answer 403
        return
    body = _body(code, message)
    headers = [*_headers(body, extra or []), (b"connection", b"close")]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def _http_refuse(
    send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = _body(code, message)
    headers = _headers(body, extra or [])
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
