"""Small ASGI helpers shared by the client and admin applications."""

from __future__ import annotations

from typing import Any

import orjson


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


async def respond_error(
    send: Any,
    status: int,
    message: str,
    code: str = "invalid_request",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """An error in the OpenAI shape, which the official clients raise with its message."""
    error = {"message": message, "type": code, "code": status}
    await respond_json(send, status, {"error": error}, headers)
