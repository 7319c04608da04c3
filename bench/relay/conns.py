"""Connection-level load-client jobs: idle connections, handshakes, close → upstream-closed probes.

Idle connections stay open between jobs (a worker holds them until `idle_close`), each with a
reader task so the server's heartbeat pings are answered, as a live browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson

from bench.relay.clients import chat_body, session

OPEN_CONCURRENCY = 200


class IdlePool:
    def __init__(self) -> None:
        self.sessions: list[aiohttp.ClientSession] = []
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self.pongs_missed = 0

    async def open(self, job: dict[str, Any]) -> dict[str, Any]:
        """Open `count` WebSockets spread over `local_addrs`; returns how many are up."""
        addrs: list[str] = job["local_addrs"]
        per_addr = -(-job["count"] // len(addrs))
        limit = asyncio.Semaphore(OPEN_CONCURRENCY)
        errors: dict[str, int] = {}

        async def one(http: aiohttp.ClientSession) -> None:
            async with limit:
                try:
                    ws = await http.ws_connect(
                        job["url"], autoping=True, compress=0, heartbeat=None
                    )
                    await ws.receive()  # hello
                except (aiohttp.ClientError, OSError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return
            self.sockets.append(ws)
            self.readers.append(asyncio.create_task(_read_until_closed(ws)))

        tasks = []
        remaining = job["count"]
        for addr in addrs:
            http = session(addr)
            self.sessions.append(http)
            n = min(per_addr, remaining)
            remaining -= n
            tasks += [one(http) for _ in range(n)]
        async with asyncio.timeout(job["timeout"]):
            await asyncio.gather(*tasks)
        return {"open": len(self.sockets), "errors": errors}

    async def close(self) -> dict[str, Any]:
        alive = sum(1 for ws in self.sockets if not ws.closed)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for http in self.sessions:
            await http.close()  # closes every socket it owns without a close handshake each
        self.sessions, self.sockets, self.readers = [], [], []
        return {"alive_at_close": alive}


async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async for _msg in ws:  # pings are answered inside receive() (autoping)
            pass


async def handshake_job(job: dict[str, Any]) -> dict[str, Any]:
    """Connect, wait for `hello`, close; `concurrency` loops for `duration` seconds."""
    done = errors = 0
    deadline = time.monotonic() + job["duration"]
    async with session(job.get("local_addr"), limit=0) as http:

        async def loop() -> None:
            nonlocal done, errors
            while time.monotonic() < deadline:
                try:
                    async with http.ws_connect(job["url"], compress=0) as ws:
                        await ws.receive()
                    done += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1

        t0 = time.monotonic()
        async with asyncio.timeout(job["duration"] + 30):
            await asyncio.gather(*(loop() for _ in range(job["concurrency"])))
    return {"handshakes": done, "errors": errors, "elapsed": time.monotonic() - t0}


async def probe_job(job: dict[str, Any]) -> dict[str, Any]:
    """Start a stream tagged `probe-N`, read `after` tokens, note the time, close the client side.

    Over WebSocket the close is a normal close frame; over HTTP the client drops the connection
    (what an SDK does when the caller stops iterating)."""
    closes: dict[str, float] = {}
    errors = 0
    limit = asyncio.Semaphore(job["concurrency"])
    async with session(limit=0) as http:

        async def one(n: int) -> None:
            nonlocal errors
            async with limit:
                try:
                    closes[str(n)] = await (_probe_ws if job["kind"] == "ws" else _probe_http)(
                        http, job["url"], n, job["after"]
                    )
                except (aiohttp.ClientError, OSError, ValueError) as exc:
                    errors += 1
                    del exc

        first = job["first"]
        async with asyncio.timeout(job["count"] * 2 + 30):
            await asyncio.gather(*(one(first + i) for i in range(job["count"])))
    return {"closes": closes, "errors": errors}


async def _probe_ws(http: aiohttp.ClientSession, url: str, n: int, after: int) -> float:
    async with http.ws_connect(url, compress=0) as ws:
        await ws.receive()
        body = chat_body(4096, f"probe-{n}")
        await ws.send_bytes(orjson.dumps({"type": "generate", "id": "p", "body": body}))
        seen = 0
        for _ in range(after + 8):
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ValueError(f"websocket {msg.type.name}")
            seen += orjson.loads(msg.data)["type"] == "delta"
            if seen >= after:
                break
        t_close = time.monotonic()
        await ws.close()
        return t_close


async def _probe_http(http: aiohttp.ClientSession, url: str, n: int, after: int) -> float:
    body = orjson.dumps({**chat_body(4096, f"probe-{n}"), "stream": True})
    response = await http.post(url, data=body, headers={"Content-Type": "application/json"})
    seen = 0
    for _ in range(after * 4 + 8):
        chunk = await response.content.readuntil(b"\n\n")
        seen += b'"content"' in chunk
        if seen >= after:
            break
    t_close = time.monotonic()
    response.close()  # drops the connection, as a client that stops reading does
    return t_close
