"""The client-facing ASGI application: `/v1/stream` (WebSocket) and the OpenAI HTTP routes."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.context import ServerContext
from sidecar.ingress.websocket import WebSocketSession

HTTP_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions"})


class ClientApp:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "websocket":
            if scope["path"] == "/v1/stream" and not self.ctx.draining:
                session = WebSocketSession(scope, receive, send, self.ctx)
                # This frame lives as long as the connection: it must not keep the scope,
                # whose headers the session reads and lets go of (see WebSocketSession.run).
                del scope
                await session.run()
            else:
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "http":
            if scope["path"] in HTTP_ROUTES and scope["method"] == "POST":
                from sidecar.ingress.http import relay_http

                await relay_http(scope, receive, send, self.ctx)
            else:
                await respond_json(send, 404, {"error": {"message": "not found", "code": 404}})
        elif kind == "lifespan":
            await lifespan(receive, send)


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond_json(
    send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
