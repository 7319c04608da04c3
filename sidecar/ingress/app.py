"""The client-facing ASGI application: `/v1/stream` (WebSocket protocol v1), `/v1/realtime`
(realtime sessions relayed to the model server's WebSocket), the HTTP routes accounted as
streams (sidecar.upstream.routes) and every other `/v1/*` request passed through unaccounted."""

from __future__ import annotations

import logging
from typing import Any

from sidecar.context import ServerContext
from sidecar.ingress.asgi import lifespan, respond_error, respond_json
from sidecar.ingress.http import relay_http
from sidecar.ingress.passthrough import pass_through
from sidecar.ingress.realtime import PATH as REALTIME_PATH
from sidecar.ingress.realtime import RealtimeSession
from sidecar.ingress.transport import EXTENSION
from sidecar.ingress.websocket import WebSocketSession
from sidecar.upstream.routes import ROUTES

log = logging.getLogger("sidecar")

WEBSOCKET_PATHS = ("/v1/stream", REALTIME_PATH)
DRAINING_HEADERS = [(b"retry-after", b"1"), (b"connection", b"close")]


class ClientApp:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "websocket":
            path = scope["path"]
            if path in WEBSOCKET_PATHS and EXTENSION not in scope.get("extensions", {}):
                # Another server than `sidecar serve`: without its transport the delivered
                # counts and heartbeats cannot be kept, so no session rather than a wrong bill.
                log.error("%s needs sidecar serve's WebSocket protocol; refused", path)
                await send({"type": "websocket.close", "code": 1011})
            elif path == "/v1/stream" and not self.ctx.draining:
                session = WebSocketSession(scope, receive, send, self.ctx)
                # This frame lives as long as the connection: it must not keep the scope,
                # whose headers the session reads and lets go of (see WebSocketSession.run).
                del scope
                await session.run()
            elif path == REALTIME_PATH and not self.ctx.draining:
                realtime = RealtimeSession(scope, receive, send, self.ctx)
                del scope
                await realtime.run()
            else:
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "http":
            path = scope["path"]
            accounted = path in ROUTES and scope["method"] == "POST"
            if not accounted and not path.startswith("/v1/"):
                await respond_json(send, 404, {"error": {"message": "not found", "code": 404}})
            elif self.ctx.draining:  # a keep-alive connection asking for more while we drain
                await respond_error(
                    send,
                    503,
                    "this sidecar is shutting down; retry on another replica",
                    "draining",
                    headers=DRAINING_HEADERS,
                )
            elif accounted:
                await relay_http(scope, receive, send, self.ctx)
            else:
                await pass_through(scope, receive, send, self.ctx)
        elif kind == "lifespan":
            await lifespan(receive, send)
