"""The simulator in this process on a free loopback port, and a raw HTTP/1.1 client that shows
exactly what went over the wire (status line or not, events, end marker or not)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sidecar.simulate.model import SimSettings
from sidecar.simulate.server import create_app
from tests.support.timeouts import scaled


@dataclass
class Sim:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = await RawStream.open(self, method, path, body)
        try:
            await raw.read_to_end(scaled(5))
        finally:
            raw.close()
        return raw.status, json.loads(raw.body)

    async def stats(self) -> dict[str, Any]:
        status, stats = await self.call("GET", "/sim/stats?detail=1")
        assert status == 200
        return dict(stats)

    async def wait_stats(self, **expected: int) -> dict[str, Any]:
        """Poll /sim/stats until the named counters have these values (bounded)."""
        deadline = time.monotonic() + scaled(5)
        while True:
            stats = await self.stats()
            if all(stats[k] == v for k, v in expected.items()) or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def simulator(**settings: Any) -> AsyncIterator[Sim]:
    settings.setdefault("ttft", 0.01)
    settings.setdefault("tokens_per_second", 200.0)
    runner = web.AppRunner(create_app(SimSettings(**settings)), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Sim(host, port)
    finally:
        await runner.cleanup()


@dataclass
class RawStream:
    """One request on its own connection; `received` keeps every byte in arrival order."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray = field(default_factory=bytearray)
    eof: bool = False
    reset: bool = False

    @classmethod
    async def open(cls, sim: Sim, method: str, path: str, body: Any = None) -> RawStream:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {sim.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        return cls(reader, writer)

    async def read_for(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds` (less if the connection ends)."""
        before = len(self.received)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self.eof:
                    await self._read_some()
        return bytes(self.received[before:])

    async def read_until(self, marker: bytes, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while marker not in self.received and not self.eof:
                await self._read_some()

    async def read_to_end(self, seconds: float) -> None:
        """Until the response is complete (its length or its last chunk) or the peer closes."""
        async with asyncio.timeout(seconds):
            while not self.eof and not self._complete():
                await self._read_some()

    async def _read_some(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionResetError:
            data, self.reset = b"", True
        self.received += data
        self.eof = not data

    def _complete(self) -> bool:
        head, sep, body = bytes(self.received).partition(b"\r\n\r\n")
        if not sep:
            return False
        if b"transfer-encoding: chunked" in head.lower():
            return body.endswith(b"0\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(body) >= int(line.split(b":")[1])
        return False

    @property
    def head(self) -> str:
        return bytes(self.received).partition(b"\r\n\r\n")[0].decode()

    @property
    def status(self) -> int:
        return int(self.head.split(" ")[1])

    @property
    def body(self) -> bytes:
        return bytes(self.received).partition(b"\r\n\r\n")[2]

    def events(self) -> list[str]:
        """The SSE `data:` payloads received (chunk-size lines dropped)."""
        return [
            line.removeprefix("data: ")
            for line in self.body.decode(errors="replace").split("\n")
            if line.startswith("data: ")
        ]

    def ended_cleanly(self) -> bool:
        return self.body.endswith(b"0\r\n\r\n")

    def close(self) -> None:
        self.writer.close()


def contents(events: list[str]) -> list[str]:
    """The content of chat chunks, skipping the role chunk and non-JSON events."""
    out = []
    for event in events:
        try:
            chunk = json.loads(event)
        except json.JSONDecodeError:
            continue
        if isinstance(chunk, dict) and chunk.get("choices"):
            content = chunk["choices"][0].get("delta", {}).get("content")
            if content:
                out.append(content)
    return out


def chat(max_tokens: int, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": "sim-small",
        "messages": [{"role": "user", "content": "x" * 40}],  # 10 prompt tokens
        "max_tokens": max_tokens,
        "stream": stream,
        **extra,
    }
