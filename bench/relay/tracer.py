"""A tracing upstream: streams SSE forever and logs, per probe, when its connection was closed.

Measures "client close → upstream closed" from outside the sidecar: the load client notes
CLOCK_MONOTONIC when it closes, this server notes CLOCK_MONOTONIC in `connection_lost` (the
clock is system-wide, so the two are comparable). The probe id travels in the prompt text.

    python -m bench.relay.tracer --listen 127.0.0.1:8001 --log closes.txt
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import IO, cast

import uvloop

PROBE = re.compile(rb"probe-(\d+)")
HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'
INTERVAL = 0.005
MAX_CHUNKS = 12_000  # one minute, then the stream ends on its own


class Upstream(asyncio.Protocol):
    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.buffer = b""
        self.probe: str | None = None
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, body = self.buffer.partition(b"\r\n\r\n")
        if not sep or self.task is not None:
            return
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        if length and len(body) < int(length.group(1)):
            return
        match = PROBE.search(body)
        self.probe = match.group(1).decode() if match else None
        self.task = asyncio.get_running_loop().create_task(self._stream())

    async def _stream(self) -> None:
        assert self.transport is not None
        self.transport.write(HEADERS)
        for _ in range(MAX_CHUNKS):
            if self.transport.is_closing():
                return
            self.transport.write(CHUNK)
            await asyncio.sleep(INTERVAL)
        self.transport.write(b"data: [DONE]\n\n")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.probe is not None:
            self.log.write(f"{self.probe} {time.monotonic():.6f}\n")
            self.log.flush()
        if self.task is not None:
            self.task.cancel()


async def serve(host: str, port: int, log: IO[str]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(log), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:8001")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    with open(args.log, "a") as log:
        uvloop.run(serve(host, int(port), log))


if __name__ == "__main__":
    main()
