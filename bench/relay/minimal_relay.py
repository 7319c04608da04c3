"""The floor: a WebSocket → SSE relay with no accounting, no metrics, no ledger, no heartbeat RTTs.

Same stack as the sidecar (uvicorn + the `websockets-sansio` backend, raw ASGI, the sidecar's
keep-alive HTTP/1.1 client `sidecar.upstream.http1` to the upstream, orjson) and the same
protocol v1 frames, so the gap between this and the sidecar is what the sidecar's own logic
costs. One ASGI `send` per delta, as a plain ASGI app would.

    python -m bench.relay.minimal_relay --listen 127.0.0.1:8090 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import orjson
import uvicorn

from sidecar.upstream.http1 import Origin, Pool

HELLO = '{"type":"hello","v":1}'


class MinimalRelay:
    def __init__(self, upstream: str) -> None:
        self.origin = Origin(upstream.rstrip("/"))
        self.pool: Pool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(receive, send)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"minimal relay\n"})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = Pool(self.origin, connect_timeout=5.0)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _websocket(self, receive: Any, send: Any) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": HELLO})
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                frame = orjson.loads(message.get("text") or message.get("bytes") or b"{}")
                if frame.get("type") == "generate":
                    task = asyncio.create_task(self._relay(send, frame["id"], frame["body"]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _relay(self, send: Any, rid: str, body: dict[str, Any]) -> None:
        assert self.pool is not None
        data = orjson.dumps({**body, "stream": True})
        headers = {"Content-Type": "application/json"}
        seq = 0
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "websocket.send", "text": f'{{"type":"start","id":"{rid}"}}'})
            response = await self.pool.request("POST", "/v1/chat/completions", data, headers)
            try:
                buffer = b""
                async for chunk in response.chunks():
                    *events, buffer = (buffer + chunk).split(b"\n\n")
                    for event in events:
                        text = _content(event)
                        if text:
                            seq += 1
                            frame = {"type": "delta", "id": rid, "seq": seq, "text": text}
                            await send(
                                {"type": "websocket.send", "text": orjson.dumps(frame).decode()}
                            )
            finally:
                response.release()
            done = {"type": "done", "id": rid, "finish_reason": "length"}
            await send({"type": "websocket.send", "text": orjson.dumps(done).decode()})


def _content(event: bytes) -> str | None:
    if not event.startswith(b"data: ") or event == b"data: [DONE]":
        return None
    choices = orjson.loads(event[6:]).get("choices") or ()
    for choice in choices:
        text = (choice.get("delta") or {}).get("content")
        if text:
            return str(text)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:8090")
    parser.add_argument("--upstream", default="http://127.0.0.1:8000")
    parser.add_argument("--heartbeat", type=float, default=20.0)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    uvicorn.run(
        MinimalRelay(args.upstream),
        host=host,
        port=int(port),
        ws="websockets-sansio",
        http="httptools",
        loop="uvloop",
        lifespan="on",
        ws_ping_interval=args.heartbeat,
        ws_ping_timeout=args.heartbeat,
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
