"""A seam in uvicorn's sans-I/O WebSocket protocol: the `sidecar.transport` ASGI extension.

Plain ASGI hides what the sidecar must see: the round-trip time of protocol pings, how many
bytes still sit unsent in the transport, and a way to abort a dead peer instead of waiting for
a polite close behind a full send buffer (DESIGN §10). This subclass publishes a handle for
that in `scope["extensions"]`, and lets the app write several frames with one `write()`.
Under another ASGI server the extension is absent and the app falls back to plain `send`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

EXTENSION = "sidecar.transport"


class ClientGone(Exception):
    """The client's connection is closed or closing; nothing more can be written."""


def _ignore_rtt(_rtt: float) -> None:
    return None


def _ignore_missed() -> None:
    return None


class TransportHandle:
    """What the app may do with the connection beyond ASGI messages."""

    __slots__ = ("_protocol", "bytes_written", "on_missed", "on_rtt")

    def __init__(self, protocol: SidecarWebSocketProtocol) -> None:
        self._protocol = protocol
        self.bytes_written = 0
        self.on_rtt: Callable[[float], None] = _ignore_rtt
        self.on_missed: Callable[[], None] = _ignore_missed

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
        for frame in frames:
            conn.send_text(frame)
        data = b"".join(conn.data_to_send())
        p.transport.write(data)
        self.bytes_written += len(data)
        return len(data)

    def buffered(self) -> int:
        """Bytes accepted by `write` that the kernel has not taken yet."""
        transport = self._protocol.transport
        return 0 if transport.is_closing() else transport.get_write_buffer_size()

    def abort(self) -> None:
        """Drop the connection now, discarding anything unsent (a dead peer will not read it)."""
        self._protocol.transport.abort()

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()


class SidecarWebSocketProtocol(WebSocketsSansIOProtocol):
    handle: TransportHandle

    def handle_connect(self, event: Any) -> None:
        self.handle = TransportHandle(self)
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # The ASGI task was created but has not run yet, so it sees the extension.
            scope["extensions"][EXTENSION] = self.handle

    def handle_pong(self, event: Frame) -> None:
        expected = self.pending_ping_payload
        super().handle_pong(event)
        if expected is not None and bytes(event.data) == expected:
            self.handle.on_rtt(self.last_ping_rtt)

    def keepalive_timeout(self) -> None:
        # uvicorn would send a close frame and `close()`, which waits for the send buffer to
        # drain: with a vanished peer that is forever. Abort instead, and tell the app why.
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.disconnected:
            return
        self.handle.on_missed()
        self.transport.abort()
