"""Opening one connection to `/v1/stream`: credential, tenant, resume token, and the hello.

A refusal the client cannot fix by retrying (401, 403) becomes `ClientError("refused")` with the
sidecar's reason; every other failure is one of `RETRYABLE`, for the caller's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from sidecar.client.errors import ClientError, Code

Token = str | Callable[[], str | Awaitable[str]]
RETRYABLE = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError)
FATAL_STATUSES = frozenset({401, 403})  # a credential or origin problem


@dataclass(frozen=True, slots=True)
class Timeouts:
    open: float = 10.0  # TCP + upgrade, and then the hello, each
    ping_interval: float | None = 10.0  # WebSocket protocol pings find a dead sidecar
    ping_timeout: float | None = 10.0
    close: float = 2.0


async def dial(
    url: str, token: Token | None, tenant: str | None, resume_token: str | None, t: Timeouts
) -> tuple[ClientConnection, str | bytes]:
    """Open a connection and read its first frame (the hello)."""
    supplied = token() if callable(token) else token
    credential = await supplied if isinstance(supplied, Awaitable) else supplied
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    if tenant:
        headers["X-Sidecar-Tenant"] = tenant
    if resume_token:
        url = _with_query(url, resume_token=resume_token)
    try:
        ws = await ws_connect(
            url,
            additional_headers=headers,
            open_timeout=t.open,
            ping_interval=t.ping_interval,
            ping_timeout=t.ping_timeout,
            close_timeout=t.close,
            compression=None,  # deltas are small; deflate costs the sidecar memory per connection
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in FATAL_STATUSES:
            raise ClientError(Code.REFUSED, _refusal(status, bytes(exc.response.body))) from None
        raise
    try:
        return ws, await asyncio.wait_for(ws.recv(), t.open)
    except BaseException:
        ws.transport.abort()
        raise


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _refusal(status: int, body: bytes) -> str:
    """The sidecar's refusal body is `{"error": {"code", "message"}}`."""
    with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
        error = orjson.loads(body or b"{}")["error"]
        return f"the sidecar refused the connection ({status} {error['code']}): {error['message']}"
    return f"the sidecar refused the connection with HTTP {status}"
