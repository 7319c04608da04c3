"""Handshake and body timeouts: a connection must deliver a complete request head (the WebSocket
upgrade request, or an HTTP request's headers) within `timeout` seconds of connecting or of
starting a new request on a kept-alive connection; otherwise it is dropped. Then an HTTP request
body must arrive whole within `body_timeout` seconds, with no gap longer than
`body_idle_timeout`, or the request is answered 408 and the connection closed. This bounds what a
slowloris client (a head or a body trickled byte by byte) can hold: uvicorn has no such timers.

`with_handshake_timeout` returns a subclass of uvicorn's httptools protocol (by way of the
sidecar's, sidecar.ingress.http_delivery) for `Config(http=)`.

On a kept-alive connection a request's head and body usually arrive in one read: the timers are
then armed only if the read ends with the head or the body incomplete, not armed and cancelled
within it (four timer operations a request, measured in the SSE path's CPU).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sidecar.ingress.http_delivery import SidecarHttpProtocol

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HandshakeTimeoutProtocol(SidecarHttpProtocol):
    handshake_timeout: float = 10.0
    body_timeout: float = 30.0  # the whole body, from the end of the head; 0 = no limit
    body_idle_timeout: float = 10.0  # between body bytes; 0 = no limit
    on_timeout: Callable[[], None] = staticmethod(lambda: None)
    on_body_timeout: Callable[[], None] = staticmethod(lambda: None)
    _handshake_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _body_deadline: float | None = None
    _head_pending = False  # a request's head began and is not complete

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Whatever this read left incomplete is timed from now.
        if self._head_pending and self._handshake_timer is None:
            self._arm()
        if self._body_deadline is not None and self._body_timer is None:
            self._arm_body()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_pending = True

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._disarm()
        super().on_headers_complete()
        if (self.body_timeout or self.body_idle_timeout) and not self.parser.should_upgrade():
            # Cleared by `on_message_complete` when the body is in this read.
            total = self.body_timeout or float("inf")
            self._body_deadline = self.loop.time() + total

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._body_timer is not None:
            self._arm_body()  # bytes came: the gap starts again

    def on_message_complete(self) -> None:
        self._disarm_body()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_body()
        super().connection_lost(exc)

    def _arm_body(self) -> None:
        assert self._body_deadline is not None
        if self._body_timer is not None:
            self._body_timer.cancel()
        delay = self._body_deadline - self.loop.time()
        if self.body_idle_timeout:
            delay = min(delay, self.body_idle_timeout)
        self._body_timer = self.loop.call_later(max(delay, 0.0), self._body_expired)

    def _disarm_body(self) -> None:
        self._body_deadline = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_expired(self) -> None:
        self._body_timer = self._body_deadline = None
        if self.transport.is_closing():
            return
        self.on_body_timeout()
        if self.cycle is not None and not self.cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()  # after the 408 is flushed; the app sees a disconnect
        else:
            self.transport.abort()

    def _arm(self) -> None:
        if self.handshake_timeout > 0:
            self._handshake_timer = self.loop.call_later(self.handshake_timeout, self._expired)

    def _disarm(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _expired(self) -> None:
        self._handshake_timer = None
        if self.transport.is_closing():
            return
        # Nothing in flight on this connection (a kept-alive idle connection is uvicorn's
        # keep-alive timer's business, which is cancelled when bytes of a new request arrive).
        if self.cycle is not None and not self.cycle.response_complete:
            return
        self.on_timeout()
        self.transport.abort()


def with_handshake_timeout(
    timeout: float,
    on_timeout: Callable[[], None],
    body_timeout: float = 30.0,
    body_idle_timeout: float = 10.0,
    on_body_timeout: Callable[[], None] = lambda: None,
) -> type[HandshakeTimeoutProtocol]:
    return type(
        "EdgeHttpProtocol",
        (HandshakeTimeoutProtocol,),
        {
            "handshake_timeout": timeout,
            "on_timeout": staticmethod(on_timeout),
            "body_timeout": body_timeout,
            "body_idle_timeout": body_idle_timeout,
            "on_body_timeout": staticmethod(on_body_timeout),
        },
    )
