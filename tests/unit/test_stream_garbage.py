"""A finished stream (and a realtime session) is freed by reference counting, not left for the
garbage collector.

A stream's objects (its account, decoder, request, the WebSocket's live-stream record and the
callback between them) once formed a cycle: about a dozen objects per stream that only a
collection could free. With `serve`'s young-generation threshold that was a 10-25 ms pause of
the event loop every few seconds under load, on every stream in flight (docs/benchmarks.md).
Here the collector is off while streams run through a real session against the simulator:
whatever a finished stream left in a cycle is still in `gc.get_objects()` afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.asyncio.client import ClientConnection

from sidecar.ingress.app import ClientApp
from sidecar.ingress.realtime import RealtimeSession
from sidecar.ingress.stream import LiveStream
from sidecar.ingress.websocket import WebSocketSession
from sidecar.ledger.writer import Row
from sidecar.relay.lifecycle import Stream
from sidecar.upstream.sse import SSEDecoder
from tests.support.timeouts import scaled
from tests.unit.sim_server import simulator
from tests.unit.test_http_answer_end import chat_scope
from tests.unit.test_realtime_session import ITEM, FakeClient, context, start_session

STREAMS = 5
T = TypeVar("T")
KINDS = (Stream, LiveStream, SSEDecoder)  # accounts stay on: the live view's ended ring


def without_collector(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` with the cyclic garbage collector off: what a cycle holds stays."""
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(coro)
    finally:
        gc.enable()


def left_behind() -> dict[str, int]:
    counts = {kind.__name__: 0 for kind in KINDS}
    for obj in gc.get_objects():
        if isinstance(obj, KINDS):
            counts[type(obj).__name__] += 1
    return counts


def test_finished_websocket_streams_leave_no_cycle_behind() -> None:
    rows: list[Row] = []

    async def run() -> dict[str, int]:
        async with simulator() as sim:
            ctx = context(sim.url, InMemorySpanExporter(), rows)
            await ctx.upstream.start()
            client = FakeClient()
            scope = {
                "type": "websocket",
                "path": "/v1/stream",
                "headers": [],
                "extensions": {"sidecar.transport": client.handle},
            }
            session = WebSocketSession(scope, client.receive, client.send, ctx)
            client.inbox.put_nowait({"type": "websocket.connect"})
            task = asyncio.create_task(session.run())
            await client.until("hello")
            for n in range(STREAMS):
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                body["max_tokens"] = 4
                frame = {"type": "generate", "id": f"s{n}", "body": body}
                client.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(frame)})
                await client.until("done")
            for _ in range(20):  # each relay task ends after its done (the upstream's end)
                if not ctx.streams:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            during = left_behind()  # the session is still open: only cycles keep a stream
            client.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait_for(task, scaled(5))
            await ctx.upstream.close()
            return during

    during = without_collector(run())
    finals = [r for r in rows if r.table == "streams" and r.final]
    assert len(finals) == STREAMS and {r.values["outcome"] for r in finals} == {"completed"}
    assert during == {kind.__name__: 0 for kind in KINDS}


def test_finished_http_streams_leave_no_cycle_behind() -> None:
    rows: list[Row] = []

    async def run() -> tuple[dict[str, int], list[bytes]]:
        async with simulator() as sim:
            ctx = context(sim.url, InMemorySpanExporter(), rows)
            await ctx.upstream.start()
            app = ClientApp(ctx)
            bodies: list[bytes] = []
            for _ in range(STREAMS):
                request = {
                    "model": "m",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 4,
                    "stream": True,
                }
                sent: list[dict[str, Any]] = []
                received = [
                    {"type": "http.request", "body": json.dumps(request).encode()},
                ]

                async def receive(received: list[dict[str, Any]] = received) -> dict[str, Any]:
                    if received:
                        return received.pop(0)
                    await asyncio.sleep(3600)  # the client stays
                    raise AssertionError

                async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                    sent.append(message)

                await asyncio.wait_for(app(chat_scope(), receive, send), scaled(5))
                bodies.append(b"".join(m.get("body", b"") for m in sent if "body" in m))
            await asyncio.sleep(0.05)
            during = left_behind()
            await ctx.upstream.close()
            return during, bodies

    during, bodies = without_collector(run())
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies), bodies[-1][-200:]
    finals = [r for r in rows if r.table == "streams" and r.final]
    assert len(finals) == STREAMS and {r.values["outcome"] for r in finals} == {"completed"}
    assert during == {kind.__name__: 0 for kind in KINDS}


def test_finished_realtime_sessions_leave_no_cycle_behind() -> None:
    """The realtime session, its upstream WebSocket client (websockets' asyncio connection)
    and its responses, after the client closed: nothing left for the collector."""
    kinds = (RealtimeSession, ClientConnection, Stream)
    rows: list[Row] = []

    async def run() -> dict[str, int]:
        async with simulator() as sim:
            ctx = context(sim.url, InMemorySpanExporter(), rows)
            for _ in range(3):
                client, task = await start_session(ctx)
                client.say("conversation.item.create", item=ITEM)
                client.say("response.create", response={"max_output_tokens": 3})
                await client.until("response.done")
                client.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
                await asyncio.wait_for(task, scaled(5))
                del task, client
            await asyncio.sleep(0.2)  # the upstream connections' closing handshakes
            counts = {kind.__name__: 0 for kind in kinds}
            for obj in gc.get_objects():
                if type(obj) in kinds:  # not isinstance: a dead weak proxy would raise
                    counts[type(obj).__name__] += 1
            return counts

    left = without_collector(run())
    finals = [r for r in rows if r.table == "streams" and r.final]
    assert [r.values["outcome"] for r in finals] == ["completed"] * 3
    assert left == {kind.__name__: 0 for kind in kinds}
