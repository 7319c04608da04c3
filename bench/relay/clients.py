"""Load-client jobs (run inside a `loadgen` worker process on asyncio + uvloop + aiohttp).

Each virtual user holds one connection and runs requests back to back until the deadline,
recording time to first token (request sent → first non-empty token) and every inter-token
gap as seen on arrival. The same code reads the sidecar's WebSocket, the minimal relay's, and
plain SSE (direct, nginx, the sidecar's HTTP passthrough), so only the server differs.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

MAX_REQUESTS_PER_USER = 100_000
GRACE = 30.0  # seconds a job may run past its deadline before it is cut


@dataclass
class Samples:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)  # request sent → end of the answer
    ends: list[float] = field(default_factory=list)  # when each answer ended (monotonic)
    tokens: int = 0
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def answered(self, t0: float, now: float) -> None:
        self.requests += 1
        self.total.append(now - t0)
        self.ends.append(now)

    def error(self, exc: BaseException | str) -> None:
        self.errors += 1
        kind = exc if isinstance(exc, str) else type(exc).__name__
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def chat_body(max_tokens: int, prompt: str = "bench") -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    return {"model": "sim-small", "messages": messages, "max_tokens": max_tokens}


def session(local_addr: str | None = None, limit: int = 0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=limit, local_addr=(local_addr, 0) if local_addr else None, force_close=False
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)


async def ws_user(http: aiohttp.ClientSession, url: str, job: dict[str, Any], out: Samples) -> None:
    body = chat_body(job["max_tokens"])
    deadline = job["deadline"]
    async with http.ws_connect(url, autoping=True, compress=0, max_msg_size=0) as ws:
        await ws.receive()  # hello
        await asyncio.sleep(job["delay"])
        for n in range(MAX_REQUESTS_PER_USER):
            if time.monotonic() >= deadline:
                return
            rid = f"r{n}"
            t0 = time.monotonic()
            await ws.send_bytes(orjson.dumps({"type": "generate", "id": rid, "body": body}))
            last = None
            for _ in range(job["max_tokens"] + 8):
                msg = await ws.receive()
                now = time.monotonic()
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    raise ConnectionError(f"websocket {msg.type.name}")
                frame = orjson.loads(msg.data)
                kind = frame["type"]
                if kind == "delta":
                    if last is None:
                        out.ttft.append(now - t0)
                    else:
                        out.itl.append(now - last)
                    last = now
                    out.tokens += 1
                elif kind == "done":
                    out.answered(t0, now)
                    break
                elif kind == "error":
                    out.error(str(frame.get("code")))
                    break


async def sse_user(
    http: aiohttp.ClientSession, url: str, job: dict[str, Any], out: Samples
) -> None:
    body = orjson.dumps({**chat_body(job["max_tokens"]), "stream": True})
    headers = {"Content-Type": "application/json"}
    deadline = job["deadline"]
    await asyncio.sleep(job["delay"])
    for _ in range(MAX_REQUESTS_PER_USER):
        if time.monotonic() >= deadline:
            return
        t0 = time.monotonic()
        last = ended = None
        async with http.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                out.error(f"http_{response.status}")
                await response.read()
                continue
            buffer = b""
            async for chunk in response.content.iter_any():
                now = time.monotonic()
                *events, buffer = (buffer + chunk).split(b"\n\n")
                for event in events:
                    if event == b"data: [DONE]":  # the answer's end, as the client's SDK sees it
                        ended = now
                    if not event.startswith(b"data: ") or ended is not None:
                        continue
                    choices = orjson.loads(event[6:]).get("choices") or ()
                    if not choices or not (choices[0].get("delta") or {}).get("content"):
                        continue
                    if last is None:
                        out.ttft.append(now - t0)
                    else:
                        out.itl.append(now - last)
                    last = now
                    out.tokens += 1
        out.answered(t0, ended or time.monotonic())


async def stream_job(job: dict[str, Any]) -> dict[str, Any]:
    """`streams` users against `url` (`kind` ws or sse) for `duration` seconds."""
    out = Samples()
    rng = random.Random(job["seed"])
    stagger = job["stagger"]
    t_start = time.monotonic()
    user = ws_user if job["kind"] == "ws" else sse_user
    async with session(job.get("local_addr")) as http:

        async def one(index: int) -> None:
            mine = {**job, "delay": rng.uniform(0, stagger), "deadline": deadline}
            try:
                await user(http, job["url"], mine, out)
            except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                out.error(exc)

        deadline = t_start + stagger + job["duration"]
        tasks = [one(i) for i in range(job["streams"])]
        try:
            async with asyncio.timeout(stagger + job["duration"] + GRACE):
                await asyncio.gather(*tasks)
        except TimeoutError:
            out.error("job_timeout")
    elapsed = time.monotonic() - t_start
    # Answers that ended between the stagger and the deadline: requests/s of a closed loop.
    window = sum(1 for t in out.ends if t_start + stagger <= t <= deadline)
    fields = {k: v for k, v in out.__dict__.items() if k != "ends"}
    return {**fields, "elapsed": elapsed, "window_requests": window}
