"""What an HTTP client really received: the `sidecar.http_delivery` ASGI extension.

uvicorn's `send` accepts body bytes after the client has gone, and nothing in ASGI says how many
of the bytes it took ever arrived. A client that loses its network mid-answer leaves the sidecar
writing into a dead connection until TCP gives up (`--tcp-user-timeout`); counting all of that as
delivered would hide exactly the waste the ledger is for. So, as on the WebSocket path
(sidecar.ingress.transport), the relay records which byte offset each flush ended at and samples
what the peer's TCP has acknowledged (the kernel's unacknowledged send queue, SIOCOUTQ); when the
connection is lost, the deltas delivered are those whose bytes had been acknowledged.
"""

from __future__ import annotations

import collections
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sidecar.ingress.transport import peer_was_answering, unacknowledged

EXTENSION = "sidecar.http_delivery"
# Seconds between acknowledgement samples while a response streams: they matter when the
# client's network died and TCP gives up (`--tcp-user-timeout`, seconds), by which time several
# samples after the death were taken as long as tokens kept being written.
SAMPLE_EVERY = 1.0


class HttpDelivery:
    """One response's body bytes, and how many of them reached the client."""

    __slots__ = ("_marks", "_next_sample", "_transport", "acked", "received", "written")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.written = 0  # body bytes handed to the transport, with uvicorn's chunked framing
        self.acked = 0  # of those, acknowledged by the client's TCP as of the last sample
        self.received: int | None = None  # set when the connection is lost
        # (bytes written, deltas written) after each flush; marks the client has certainly
        # received are dropped, except the last of them.
        self._marks: collections.deque[tuple[int, int]] = collections.deque()
        self._next_sample: float | None = None

    def wrote(self, size: int, deltas: int, now: float) -> None:
        """A body chunk of `size` bytes went to the transport; `deltas` written so far."""
        self.written += len(b"%x\r\n" % size) + size + 2
        self._marks.append((self.written, deltas))
        if self._next_sample is None:
            # Not at the first write: nothing of the body can be acknowledged before it.
            self._next_sample = now + SAMPLE_EVERY
        elif now >= self._next_sample:
            self._next_sample = now + SAMPLE_EVERY
            self.sample()

    def sample(self) -> None:
        if self.received is not None:
            return
        self.acked = max(self.acked, self.written - unacknowledged(self._transport))
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= self.acked:
            marks.popleft()

    def lost(self, exc: Exception | None) -> None:
        """The connection is gone: what reached the client (see `peer_was_answering`)."""
        if self.received is not None:
            return
        if peer_was_answering(exc):
            self.received = self.written - self._transport.get_write_buffer_size()
        else:
            self.received = self.acked

    def delivered_deltas(self) -> int | None:
        """Deltas whose bytes reached the client; None while the connection is up."""
        if self.received is None:
            return None
        delivered = 0
        for end, deltas in self._marks:
            if end > self.received:
                break
            delivered = deltas
        return delivered


class SidecarHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, publishing an `HttpDelivery` for each request."""

    delivery: HttpDelivery | None = None

    def on_headers_complete(self) -> None:
        # The request's task is created by the parent, with this scope: set the extension first.
        self.delivery = HttpDelivery(self.transport)
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]  # ASGI types it narrowly
        scope.setdefault("extensions", {})[EXTENSION] = self.delivery
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # The connection belongs to the WebSocket protocol now and this one is never called
        # again; its parser refers back to it, a cycle only the garbage collector would free.
        del self.parser

    def connection_lost(self, exc: Exception | None) -> None:
        if self.delivery is not None:
            self.delivery.lost(exc)
        super().connection_lost(exc)
