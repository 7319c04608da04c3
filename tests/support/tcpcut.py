"""A loopback TCP forwarder whose connections a test can cut, as a network failure would.

Provides :class:`CuttableProxy`: clients connect to ``proxy.port`` instead of the server;
``cut()`` aborts both sides of every forwarded connection at once (RST, no close frame), so
the client sees its connection die mid-stream while the server process keeps running and keeps
its in-memory state (a restart would lose a resumable session). New connections after a cut
are forwarded again, so a client can reconnect through the same address.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["CuttableProxy"]


class CuttableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.accepted = 0  # connections forwarded so far
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._handlers:  # let the aborted pipes see their end before the loop closes
            await asyncio.wait(self._handlers, timeout=5)

    def cut(self) -> None:
        """Abort every forwarded connection, both sides."""
        self.cuts += 1
        for pair in list(self._live):
            for writer in pair:
                writer.transport.abort()
        self._live.clear()

    async def _forward(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, server_w)
        self._live.add(pair)
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        self._live.discard(pair)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()
