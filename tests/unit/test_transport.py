"""The WebSocket protocol subclass keeps little per idle connection, and still behaves.

The light queue and flag stand in for uvicorn's `asyncio.Queue` and `asyncio.Event`; the
protocol's attributes live in slots; the handshake's request, response and scope headers are
dropped once the upgrade is accepted. A real uvicorn server checks the last two, so that a
uvicorn upgrade that adds attributes or reads the handshake later is noticed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import uvicorn

from sidecar.ingress.http_delivery import SidecarHttpProtocol
from sidecar.ingress.transport import (
    EXTENSION,
    SidecarWebSocketProtocol,
    TransportHandle,
    _Inbox,
    _Writable,
)
from tests.support.ports import async_wait_for_port, free_port


def test_inbox_is_fifo_and_wakes_a_waiting_get() -> None:
    async def main() -> None:
        inbox = _Inbox()
        assert inbox.empty()
        getter = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait(1)
        inbox.put_nowait(2)
        assert await getter == 1
        assert inbox.qsize() == 1
        assert await inbox.get() == 2
        assert inbox.empty()

    asyncio.run(main())


def test_inbox_passes_an_item_on_when_the_woken_getter_is_cancelled() -> None:
    async def main() -> None:
        inbox = _Inbox()
        first = asyncio.create_task(inbox.get())
        second = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait("x")  # wakes `first`
        first.cancel()
        assert await asyncio.wait_for(second, 1) == "x"
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(main())


def test_writable_waits_only_while_cleared() -> None:
    async def main() -> None:
        flag = _Writable()
        assert flag.is_set()
        assert await flag.wait()
        flag.clear()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        flag.set()
        assert await asyncio.gather(*waiters) == [True, True]

    asyncio.run(main())


def test_an_open_connection_keeps_no_handshake_state_and_no_instance_dict() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        seen["headers_before_accept"] = list(scope["headers"])
        await send({"type": "websocket.accept"})
        seen["scope"] = scope
        seen["handle"] = scope["extensions"][EXTENSION]
        while (await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": "echo"})

    async def main() -> None:
        async with uvicorn_serving(app, ws_ping_interval=0.05, ws_ping_timeout=5) as port:
            rtts: list[float] = []
            async with aiohttp.ClientSession() as http:
                url = f"ws://127.0.0.1:{port}/"
                async with http.ws_connect(url, headers={"X-Long": "v" * 500}) as ws:
                    handle: TransportHandle = await _eventually(lambda: seen.get("handle"))
                    handle.on_rtt = rtts.append
                    reader = asyncio.create_task(ws.receive())  # answers pings meanwhile
                    await _eventually(lambda: rtts)  # heartbeats still measure RTTs
                    await ws.send_str("hi")
                    assert (await reader).data == "echo"
                    protocol = handle._protocol
                    assert vars(protocol) == {}  # every attribute is in a slot
                    assert not hasattr(protocol, "request")
                    assert not hasattr(protocol, "response")
                    assert seen["scope"]["headers"] == []
                    assert (b"x-long", b"v" * 500) in seen["headers_before_accept"]
                    assert isinstance(protocol.queue, _Inbox)

    asyncio.run(main())


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any, **options: Any) -> AsyncIterator[int]:
    """A real uvicorn server with the sidecar's WebSocket protocol on a free port."""
    port = free_port()
    config = uvicorn.Config(
        app, port=port, ws=SidecarWebSocketProtocol, lifespan="off", log_level="warning", **options
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await async_wait_for_port("127.0.0.1", port)
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, 10)


async def _eventually(probe: Any, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := probe()):  # noqa: ASYNC110 - state set by server callbacks
            await asyncio.sleep(0.01)
    return value


def test_closed_connections_leave_no_cycle_for_the_garbage_collector() -> None:
    """Connect, upgrade, close: with the collector off, nothing of a closed connection stays.
    Each one used to leave ~70 objects in cycles (the HTTP protocol and its parser after the
    upgrade, websockets' suspended parser, the handle in the scope, the session's callbacks),
    freed only by a collection: a pause of several ms per few thousand handshakes."""
    kinds = (SidecarWebSocketProtocol, SidecarHttpProtocol, TransportHandle)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        handle: TransportHandle = scope["extensions"][EXTENSION]
        session = {"handle": handle}
        handle.on_rtt = lambda _rtt: session.clear()  # refers back to it, as a session's does
        while (await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": "echo"})
        handle.detach()

    def left() -> int:
        return sum(isinstance(o, kinds) for o in gc.get_objects())

    async def main() -> int:
        async with uvicorn_serving(app, http=SidecarHttpProtocol) as port:
            async with aiohttp.ClientSession() as http:
                for _ in range(10):
                    async with http.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
                        await ws.send_str("hi")
                        assert (await ws.receive()).data == "echo"
            await asyncio.sleep(0.2)  # the server sees every close
            return left()

    gc.collect()
    gc.disable()
    try:
        assert asyncio.run(main()) == 0
    finally:
        gc.enable()
