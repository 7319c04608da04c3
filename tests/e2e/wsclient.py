"""A small protocol-v1 test client over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.support.timeouts import scaled


def chat(max_tokens: int, model: str = "sim-small", text: str = "hello there") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    }


class Client:
    """Demultiplexes frames by stream id so several requests can share one connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: dict[str | None, asyncio.Queue[dict[str, Any]]] = {}
        self.hello: dict[str, Any] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        ws = await connect(url, **kwargs)
        client = cls(ws)
        client.hello = json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))
        client._reader = asyncio.create_task(client._read())
        return client

    def queue(self, stream_id: str | None) -> asyncio.Queue[dict[str, Any]]:
        return self.frames.setdefault(stream_id, asyncio.Queue())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            await self.queue(frame.get("id")).put(frame)

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def next(self, stream_id: str | None, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue(stream_id).get(), scaled(timeout))

    async def generate(self, stream_id: str, body: dict[str, Any]) -> None:
        await self.send({"type": "generate", "id": stream_id, "body": body})

    async def read_until_end(self, stream_id: str) -> list[dict[str, Any]]:
        frames = []
        while True:
            frame = await self.next(stream_id)
            frames.append(frame)
            if frame["type"] in ("done", "error"):
                return frames

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    def abort(self) -> None:
        """Vanish without a close frame, like a killed tab."""
        self.ws.transport.abort()
        if self._reader is not None:
            self._reader.cancel()
