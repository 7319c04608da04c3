"""A lean HTTP/1.1 client for one upstream: keep-alive connections, an asyncio shell around
the sans-I/O `ResponseReader` (sidecar.upstream.h1reader, on `httptools`).

The relay's upstream side is a POST and a streamed body, nothing more, so this replaces a
general-purpose client on the hot path: the request is written in one `write()` as soon as a
pooled connection is free (no task hop), and each body chunk reaches the relay with one future
wake-up. What it does not do (redirects, proxies, cookies, compression) a model server's
streaming endpoint does not need; `Accept-Encoding: identity` keeps bodies plain.

First tokens go first: a response whose first token has not been relayed yet wakes its reader
at once, while the others' wake-ups wait in a `Lane` released once per loop iteration. When a
model server's batch step sends a token to many streams at the same moment, the one that starts
an answer is then relayed before the rest instead of behind them.

A silent model server is caught by one watchdog per pool (`Timeouts`), a timer that runs only
while responses are pending and compares each one's last read with the clock: no timer per read
on the hot path. A response that overruns its allowance fails with `UpstreamTimeout` and its
connection is closed, which tells the model server to stop generating.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import assert_never
from urllib.parse import urlsplit

from sidecar.errors import UpstreamTimeout
from sidecar.upstream.h1reader import End, Event, Failed, Head, Informational, ResponseReader
from sidecar.upstream.timeouts import Timeouts

# Past this many unread body bytes, stop reading the socket until the relay catches up (a slow
# client then slows the upstream through TCP, instead of filling the sidecar's memory).
HIGH_WATER = 256 * 1024


class BrokenResponse(ConnectionError):
    """The response was malformed or cut off before its end."""


class StaleConnection(ConnectionError):
    """A pooled connection closed before any response byte: the request was not processed."""


class Origin:
    """Where requests go: scheme, host, port, path prefix; the fixed part of every request."""

    def __init__(self, base_url: str, user_agent: str = "ai-stream-sidecar") -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://host[:port][/prefix], got {base_url}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        host_header = self.host if ":" not in self.host else f"[{self.host}]"
        if not default_port:
            host_header += f":{self.port}"
        self.fixed = f"Host: {host_header}\r\nUser-Agent: {user_agent}\r\n"

    def head(self, method: str, path: str, length: int, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1\r\n", self.fixed]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                continue  # never let a header value smuggle a second request
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        return "".join(lines).encode("latin-1")


class Response:
    """One response being received; iterate `chunks()` for the body, `release()` when done
    (mid-body that closes the connection). `chunks()` raises after the last bytes that came
    if the body did not end cleanly: `BrokenResponse`, `UpstreamTimeout`."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_conn",
        "_error",
        "_headers_waiter",
        "_waiter",
        "complete",
        "eof",
        "keep_alive",
        "status",
        "urgent",
    )

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._headers_waiter: asyncio.Future[None] = conn.loop.create_future()
        self.status = 0
        self.urgent = True  # its first token has not been relayed: wake the reader at once
        self.keep_alive = False
        self.complete = False  # the whole message arrived (the connection may be reused)
        self.eof = False  # no more body will come (complete, or the connection ended)

    async def wait_headers(self) -> None:
        await self._headers_waiter

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._buffer:
                yield self.take_buffered()
                continue
            if self.eof:
                if self._error is not None:
                    raise self._error  # what arrived was handed out first
                return
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                self.release()  # nobody will read the rest: never leave the connection out
                raise
            finally:
                self._waiter = None

    async def read(self, limit: int = 64 * 1024) -> bytes:
        """The whole (small) body, e.g. an error's detail; at most `limit` bytes."""
        data = b""
        async for chunk in self.chunks():
            data += chunk
            if len(data) >= limit:
                break
        return data[:limit]

    def body_ready(self) -> bool:
        """Body bytes (or its end) arrived and wait to be read."""
        return bool(self._buffer) or self.eof

    def read_to_end(self) -> bool:
        """The whole message arrived and every byte of it was handed out."""
        return self.complete and not self._buffer

    def take_buffered(self) -> bytes:
        """Bytes that arrived and were not read yet."""
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        if self._buffered >= HIGH_WATER:
            self._conn.resume_reading()
        self._buffered = 0
        return data

    def release(self) -> None:
        """Done with this response: the connection goes back to the pool or is closed."""
        self._conn.finished(self)

    # From the connection ----------------------------------------------------------------------

    def _headers_complete(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        if not self._headers_waiter.done():
            self._headers_waiter.set_result(None)

    def _body(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= HIGH_WATER:
            self._conn.pause_reading()
        if self.urgent:
            self._wake()
        else:
            self._conn.pool.lane.defer(self)

    def _end(self, complete: bool, error: BaseException | None = None) -> None:
        if self.eof:
            return  # the first end is the true one (a timeout, then the close it caused)
        self.complete = complete
        self.eof = True
        self._error = error
        if error is not None and not self._headers_waiter.done():
            self._headers_waiter.set_exception(error)
            self._headers_waiter.exception()  # retrieved: nobody may be waiting any more
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Lane:
    """Wake-ups that may wait: released together by one callback, which runs after the wake-ups
    (and new requests) already queued in this loop iteration, so their readers run after the
    urgent ones. The delay is one turn of the loop; a token is never held back longer."""

    __slots__ = ("_loop", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[Response] = []  # non-empty exactly while a release is scheduled

    def defer(self, response: Response) -> None:
        if not self._waiting:
            self._loop.call_soon(self._release)
        self._waiting.append(response)

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for response in waiting:
            response._wake()


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.reader: ResponseReader | None = None
        self.used = False  # has carried a request before (a stale keep-alive is possible)
        self.closed = False
        self.paused = False
        self.sent_at = 0.0  # loop time the request was written
        self.last_read = 0.0  # loop time bytes last arrived
        self.body_started = False

    def send(self, data: bytes) -> Response:
        assert self.transport is not None and self.response is None
        self.response = Response(self)
        self.reader = ResponseReader()
        self.sent_at = self.last_read = self.loop.time()
        self.body_started = False
        self.transport.write(data)
        self.pool.checked_out(self)
        return self.response

    def finished(self, response: Response) -> None:
        if self.response is not response:
            return
        reusable = self.reader is not None and self.reader.reusable
        self.response = self.reader = None
        self.used = True
        self.pool.checked_in(self)
        if reusable and not self.closed:
            self.resume_reading()
            self.pool.put(self)
        else:
            self.close()

    def time_out(self, error: UpstreamTimeout) -> None:
        """Silent too long: fail the response and hang up (never reused)."""
        if self.response is not None:
            self.response._end(False, error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.last_read = self.loop.time()  # the pause was ours, not the server's silence
            self.transport.resume_reading()

    # asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        reader, response = self.reader, self.response
        if reader is None or response is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        for event in reader.feed(data):
            if type(event) is bytes:  # the per-chunk case first, without a `match`
                self.body_started = True
                response._body(event)
            else:
                self._handle(event, response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        reader, response = self.reader, self.response
        if reader is None or response is None:
            return
        for event in reader.feed_eof():
            if isinstance(event, Failed) and exc is not None:
                event = Failed(f"{event.reason}: {exc}", event.received)
            self._handle(event, response)

    def _handle(self, event: Event, response: Response) -> None:
        match event:
            case bytes():
                self.body_started = True
                response._body(event)
            case Head(status, _headers, keep_alive):
                response._headers_complete(status, keep_alive)
            case End():
                response._end(True)
            case Failed(reason, received):
                stale = self.used and not received  # the server closed it while idle
                response._end(False, (StaleConnection if stale else BrokenResponse)(reason))
                self.close()
            case Informational():
                pass  # the answer is still to come
            case _:
                assert_never(event)


class Pool:
    """Idle keep-alive connections to one origin, most recently used first."""

    def __init__(
        self,
        origin: Origin,
        connect_timeout: float,
        first_byte_timeout: float = 0.0,
        idle_timeout: float = 0.0,
    ) -> None:
        self.origin = origin
        self.connect_timeout = connect_timeout
        self.timeouts = Timeouts(first_byte_timeout, idle_timeout)
        self.loop = asyncio.get_running_loop()
        self.lane = Lane(self.loop)
        self.busy: set[Connection] = set()  # carrying a request whose response is not released
        self._idle: collections.deque[Connection] = collections.deque()
        self._ssl = ssl.create_default_context() if origin.tls else None
        self._watchdog: asyncio.TimerHandle | None = None

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        """Send a request; returns once the response's status and headers arrived."""
        data = self.origin.head(method, path, len(body), headers) + body
        for _attempt in range(2):
            conn = self._take_idle() or await self._connect()
            response = conn.send(data)
            try:
                await response.wait_headers()
            except StaleConnection:
                continue  # the server had closed it while idle: retry once on a fresh one
            except BaseException:
                conn.close()  # cancelled or failed mid-request: the server must see us leave
                raise
            return response
        raise ConnectionError("upstream closed two connections before answering")

    def _take_idle(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self) -> Connection:
        origin = self.origin
        _transport, conn = await asyncio.wait_for(
            self.loop.create_connection(
                lambda: Connection(self),
                origin.host,
                origin.port,
                ssl=self._ssl,
                server_hostname=origin.host if self._ssl else None,
            ),
            self.connect_timeout,
        )
        return conn

    def put(self, conn: Connection) -> None:
        self._idle.append(conn)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def discard(self, conn: Connection) -> None:
        self.busy.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._idle:
            self._idle.pop().close()

    # The watchdog -----------------------------------------------------------------------------

    def checked_out(self, conn: Connection) -> None:
        self.busy.add(conn)
        if self._watchdog is None and self.timeouts.enabled:
            self._watchdog = self.loop.call_later(self.timeouts.interval, self._check)

    def checked_in(self, conn: Connection) -> None:
        self.busy.discard(conn)

    def _check(self) -> None:
        self._watchdog = None
        now, timeouts = self.loop.time(), self.timeouts
        for conn in list(self.busy):
            response = conn.response
            if response is None or response.eof or conn.paused:
                continue  # nothing more to wait for, or the relay is not reading
            phase = timeouts.expired(now, conn.sent_at, conn.last_read, conn.body_started)
            if phase is not None:
                conn.time_out(UpstreamTimeout(phase, timeouts.limit(phase)))
        if self.busy:
            self._watchdog = self.loop.call_later(timeouts.interval, self._check)
