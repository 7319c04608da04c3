"""Handshake timeout: a connection must deliver a complete request head (the WebSocket upgrade
request, or an HTTP request's headers) within `timeout` seconds of connecting or of starting a
new request on a kept-alive connection; otherwise it is dropped. This bounds what a slowloris
client (headers trickled byte by byte) can hold: uvicorn has no such timer of its own.

`with_handshake_timeout` returns a subclass of uvicorn's httptools protocol (by way of the
sidecar's, sidecar.ingress.http_delivery) for `Config(http=)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sidecar.ingress.http_delivery import SidecarHttpProtocol


class HandshakeTimeoutProtocol(SidecarHttpProtocol):
    handshake_timeout: float = 10.0
    on_timeout: Callable[[], None] = staticmethod(lambda: None)
    _handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._handshake_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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
    timeout: float, on_timeout: Callable[[], None]
) -> type[HandshakeTimeoutProtocol]:
    return type(
        "EdgeHttpProtocol",
        (HandshakeTimeoutProtocol,),
        {"handshake_timeout": timeout, "on_timeout": staticmethod(on_timeout)},
    )
