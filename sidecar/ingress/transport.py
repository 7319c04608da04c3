"""A seam in uvicorn's sans-I/O WebSocket protocol: the `sidecar.transport` ASGI extension.

Plain ASGI hides what the sidecar must see: the round-trip time of protocol pings, how many
bytes still sit unsent in the transport, and a way to abort a dead peer instead of waiting for
a polite close behind a full send buffer (DESIGN §10). This subclass publishes a handle for
that in `scope["extensions"]`, and lets the app write several frames with one `write()`.
Under another ASGI server the extension is absent and the app falls back to plain `send`.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

from sidecar.relay.pump import ClientGone

EXTENSION = "sidecar.transport"
__all__ = ["EXTENSION", "ClientGone", "SidecarWebSocketProtocol", "TransportHandle"]


def _ignore_rtt(_rtt: float) -> None:
    return None


def _ignore_missed() -> None:
    return None


class TransportHandle:
    """What the app may do with the connection beyond ASGI messages."""

    __slots__ = (
        "_protocol",
        "acked_bytes",
        "bytes_written",
        "on_missed",
        "on_rtt",
        "unsent_at_close",
    )

    def __init__(self, protocol: SidecarWebSocketProtocol) -> None:
        self._protocol = protocol
        self.bytes_written = 0
        self.acked_bytes = 0  # as of the last `sample()`: bytes the peer's TCP acknowledged
        # Bytes still in the transport's buffer when the connection was lost: never delivered.
        self.unsent_at_close: int | None = None
        self.on_rtt: Callable[[float], None] = _ignore_rtt
        self.on_missed: Callable[[], None] = _ignore_missed

    def detach(self) -> None:
        """The session is done with this connection: drop its callbacks, which refer back to
        it (session → handle → session would be a cycle only the garbage collector frees)."""
        self.on_rtt, self.on_missed = _ignore_rtt, _ignore_missed

    @property
    def closing(self) -> bool:
        p = self._protocol
        return p.close_sent or p.disconnected or p.transport.is_closing()

    def write_frames(self, frames: list[bytes]) -> int:
        """Queue text frames (UTF-8 bytes) with one transport write; never waits."""
        p = self._protocol
        if self.closing:
            raise ClientGone
        conn = p.conn
        if conn.state is State.OPEN and not conn.extensions:
            # Server frames are unmasked: with no extension negotiated, a text frame is a
            # 2-10 byte header and the payload; building it here skips a Frame object and its
            # serializer per delta (the protocol object has nothing buffered: every send
            # elsewhere is followed by data_to_send()).
            data = b"".join([part for frame in frames for part in (_text_header(frame), frame)])
        else:
            for frame in frames:
                conn.send_text(frame)
            data = b"".join(conn.data_to_send())
        p.transport.write(data)
        self.bytes_written += len(data)
        return len(data)

    def buffered(self) -> int:
        """Bytes accepted by `write` that the peer has not taken yet, as far as we can tell."""
        if self.unsent_at_close is not None:
            return self.unsent_at_close
        return self._protocol.transport.get_write_buffer_size()

    def sample(self) -> int:
        """Record how much the peer has acknowledged; returns the bytes still unacknowledged.

        Counts the transport's buffer plus the kernel's unacknowledged send queue (SIOCOUTQ),
        so that when the peer vanishes we know what never reached it.
        """
        p = self._protocol
        if self.unsent_at_close is not None:
            return self.unsent_at_close
        unacked = unacknowledged(p.transport)
        self.acked_bytes = max(self.acked_bytes, self.bytes_written - unacked)
        return unacked

    def abort(self) -> None:
        """Drop the connection now, discarding anything unsent (a dead peer will not read it)."""
        if self.unsent_at_close is None:
            self.unsent_at_close = self.sample()
        self._protocol.transport.abort()

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()


class _Inbox:
    """What uvicorn uses of `asyncio.Queue` for a connection's ASGI messages, without the
    Queue's three deques and Event (about 3 KiB per idle connection). uvicorn pauses reading
    after each message, so only a few messages ever wait here."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_one()

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # it was woken for an item it will not take
                raise
            finally:
                self._waiters.remove(waiter)
        return self._items.pop(0)

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return


class _Writable:
    """`asyncio.Event` as uvicorn uses it for "the transport may take more", with a list of
    waiters made only when a write has to wait (an Event's deque is ~0.8 KiB per connection)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)
        return True


class SidecarWebSocketProtocol(WebSocketsSansIOProtocol):
    # Slots for every attribute uvicorn (0.54) and this class set on a connection: uvicorn's
    # 37 attributes are past CPython's 30 shared instance-dict keys, so each connection would
    # get its own 1.6 KiB dict; as slots they take 0.4 KiB. (An attribute a later uvicorn
    # adds still works: it lands in the instance dict; a unit test notices.)
    __slots__ = (
        "_ping_sent_perf",
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "frames",
        "handle",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "writable",
    )
    handle: TransportHandle
    send_buffer_bytes: int | None = None  # set by `serve` from --send-buffer-bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ping_sent_perf = 0.0
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if self.send_buffer_bytes and sock is not None:
            # A small kernel send buffer makes a client that stopped reading visible quickly
            # (the transport buffer grows instead), bounding memory per connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)

    def connection_lost(self, exc: Exception | None) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.unsent_at_close is None:
            if peer_was_answering(exc):
                handle.unsent_at_close = self.transport.get_write_buffer_size()
            else:
                handle.unsent_at_close = handle.bytes_written - handle.acked_bytes
        super().connection_lost(exc)
        # Nothing reads from this connection again. Two cycles would otherwise outlive it until
        # the garbage collector's next pass (a pause that grows with connections closed since):
        # websockets' parser is a generator suspended in its own protocol, and the handle (which
        # the session may still hold, for its unsent count) points back here through its
        # `_protocol`, from this protocol's attribute and from its scope's extensions.
        self.conn.parser.close()
        if handle is not None:  # the scope's extensions hold it too (the app read it long ago)
            del self.handle
            self.scope["extensions"].pop(EXTENSION, None)

    async def run_asgi(self) -> None:
        """uvicorn's, except that an upgrade the app refused with an HTTP response (401, 403,
        429, 503 from the gate) is a normal end, not "returned without completing handshake"
        logged at ERROR: uvicorn marks the handshake complete after a refusal by close, not
        after one by response. The gate counts refusals in its metrics."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            refused = self.initial_response is not None and self.close_sent  # sent in full
            if not self.handshake_complete and not refused:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    def send_keepalive_ping(self) -> None:
        super().send_keepalive_ping()
        # uvloop's loop.time() has millisecond resolution: too coarse for loopback RTTs.
        self._ping_sent_perf = time.perf_counter()

    def handle_connect(self, event: Any) -> None:
        self.handle = TransportHandle(self)
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # The ASGI task was created but has not run yet, so it sees the extension.
            scope["extensions"][EXTENSION] = self.handle

    def start_keepalive(self) -> None:
        # Called once the 101 response is written: the handshake's request and response are
        # never read again. The parser generator keeps a reference to the request, so its
        # headers are emptied too; the app read what it needed from the scope before accepting.
        self.request.headers.clear()
        del self.request, self.response
        self.scope["headers"] = []
        super().start_keepalive()

    def handle_pong(self, event: Frame) -> None:
        expected = self.pending_ping_payload
        super().handle_pong(event)
        if expected is not None and bytes(event.data) == expected:
            self.handle.on_rtt(time.perf_counter() - self._ping_sent_perf)

    def keepalive_timeout(self) -> None:
        # uvicorn would send a close frame and `close()`, which waits for the send buffer to
        # drain: with a vanished peer that is forever. Abort instead, and tell the app why.
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.disconnected:
            return
        self.handle.unsent_at_close = self.handle.sample()
        self.handle.on_missed()
        self.transport.abort()


def _text_header(payload: bytes) -> bytes:
    """RFC 6455 §5.2 header of a final, unmasked text frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size))
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


def peer_was_answering(exc: Exception | None) -> bool:
    """How a connection was lost decides what reached the peer. A close or a reset by the peer
    (a tab closed, a stream cancelled) means its TCP was answering until then: what had left the
    transport's buffer reached it. A timeout (its network died) means only what was acknowledged
    by the last sample did."""
    return exc is None or isinstance(exc, ConnectionResetError | BrokenPipeError)


def unacknowledged(transport: Any) -> int:
    """Bytes written that the peer's TCP has not acknowledged: the transport's own buffer plus
    the kernel's send queue."""
    return int(transport.get_write_buffer_size()) + kernel_unacked(transport)


def kernel_unacked(transport: Any) -> int:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # == SIOCOUTQ
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])
