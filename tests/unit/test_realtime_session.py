"""A realtime session in this process (plain ASGI messages, no uvicorn) against the simulator:
the session span, a span per response with its usage, the rows, an upstream that ends the
session, and a client too slow to read."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.context import ServerContext
from sidecar.ingress.realtime import RealtimeSession
from sidecar.ingress.transport import EXTENSION, ClientGone
from sidecar.ledger.writer import Row
from sidecar.telemetry import attributes as a
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.spans import Tracing
from sidecar.upstream.client import UpstreamClient
from tests.support.timeouts import scaled
from tests.unit.sim_server import simulator

ITEM = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "abcdefgh"}]}


class FakeHandle:
    """`serve`'s transport handle as the session uses it: frames go to the fake client."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.on_rtt: Any = None
        self.on_missed: Any = None
        self.unread = 0  # bytes the client has not taken: `buffered()`
        self.bytes_written = 0
        self.acked_bytes = 0
        self.unsent_at_close: int | None = None

    def write_frames(self, frames: list[bytes]) -> int:
        if self.client.closed.is_set():
            raise ClientGone  # as the real handle does once its transport is closing
        for frame in frames:
            self.client.sent.append({"type": "websocket.send", "text": frame.decode()})
            self.client.events.put_nowait(json.loads(frame))
            self.bytes_written += len(frame)
        return sum(map(len, frames))

    def buffered(self) -> int:
        return self.unread

    def sample(self) -> int:
        self.acked_bytes = self.bytes_written - self.unread
        return self.unread

    def abort(self) -> None:
        self.unsent_at_close = self.sample()
        self.client.closed.set()

    def detach(self) -> None:
        self.on_rtt = self.on_missed = None


class FakeClient:
    """The ASGI side of a client WebSocket: what the app sent, and a queue of what it reads."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.handle = FakeHandle(self)

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.send":
            await self.events.put(json.loads(message["text"]))
        elif message["type"] == "websocket.close":
            self.closed.set()

    def say(self, kind: str, **fields: Any) -> None:
        self.inbox.put_nowait(
            {"type": "websocket.receive", "text": json.dumps({"type": kind, **fields})}
        )

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(self.events.get(), scaled(5))
            if event["type"] == kind:
                return event


def context(sim_url: str, exporter: InMemorySpanExporter, rows: list[Row]) -> ServerContext:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = Metrics()
    return ServerContext(
        upstream=UpstreamClient(sim_url),
        recorder=Recorder(metrics, rows.append, PriceBook([]), "i", time.time),
        metrics=metrics,
        instance_id="i",
        tracing=Tracing(provider),
        realtime_upstream=sim_url.replace("http://", "ws://"),
    )


def scope(client: FakeClient) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": "/v1/realtime",
        "query_string": b"model=rt",
        "headers": [],
        "extensions": {EXTENSION: client.handle},
    }


async def start_session(ctx: ServerContext) -> tuple[FakeClient, asyncio.Task[None]]:
    """A session running in its own task, once the client has heard `session.created`."""
    client = FakeClient()
    session = RealtimeSession(scope(client), client.receive, client.send, ctx)
    client.inbox.put_nowait({"type": "websocket.connect"})
    task = asyncio.create_task(session.run())
    await client.until("session.created")
    return client, task


async def start_long_answer(ctx: ServerContext) -> tuple[FakeClient, asyncio.Task[None]]:
    """A session whose one response runs long (4,000 tokens), once its first delta arrived."""
    client, task = await start_session(ctx)
    client.say("conversation.item.create", item=ITEM)
    client.say("response.create", response={"max_output_tokens": 4000})
    await client.until("response.output_text.delta")
    return client, task


def test_spans_for_the_session_and_each_response() -> None:
    exporter = InMemorySpanExporter()
    rows: list[Row] = []

    async def run() -> None:
        async with simulator() as sim:
            ctx = context(sim.url, exporter, rows)
            client = FakeClient()
            session = RealtimeSession(scope(client), client.receive, client.send, ctx)
            client.inbox.put_nowait({"type": "websocket.connect"})
            task = asyncio.create_task(session.run())
            await client.until("session.created")
            for cap in (3, 5):
                client.say("conversation.item.create", item=ITEM)
                client.say("response.create", response={"max_output_tokens": cap})
                await client.until("response.done")
            client.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait_for(task, scaled(5))

    asyncio.run(run())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    session = spans["sidecar.session"]
    responses = [s for s in exporter.get_finished_spans() if s.name == "chat rt"]
    assert len(responses) == 2
    assert all(
        s.parent is not None and s.parent.span_id == session.context.span_id for s in responses
    )
    usage = [dict(s.attributes or {})[a.GEN_AI_USAGE_OUTPUT_TOKENS] for s in responses]
    assert usage == [3, 5]
    assert dict(responses[0].attributes or {})[a.AUDIO_OUTPUT_TOKENS] == 0
    session_attrs = dict(session.attributes or {})
    assert session_attrs[a.SESSION_STREAMS] == 2
    assert session_attrs[a.DISCONNECT_REASON] == "client_closed"
    final = [r.values for r in rows if r.table == "streams" and r.final]
    assert [(r["prompt_tokens"], r["generated_tokens"], r["outcome"]) for r in final] == [
        (2, 3, "completed"),  # "abcdefgh": 8 characters, 2 tokens
        (round((8 + 17 + 8) / 4), 5, "completed"),  # and its first answer, " the stream token"
    ]


def test_an_upstream_that_ends_the_session_fails_its_running_response() -> None:
    exporter = InMemorySpanExporter()
    rows: list[Row] = []

    async def run() -> list[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            sim = await stack.enter_async_context(simulator())
            client, task = await start_long_answer(context(sim.url, exporter, rows))
            await stack.aclose()  # the model server goes away (aiohttp closes with 1001)
            await asyncio.wait_for(client.closed.wait(), scaled(5))
            client.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
            await asyncio.wait_for(task, scaled(5))
            return client.sent

    sent = asyncio.run(run())
    close = next(m for m in sent if m["type"] == "websocket.close")
    assert close["code"] in (1001, 1011)  # the model server's code, or 1011 if it gave none
    assert close["reason"].startswith("model server closed the session")
    (final,) = [r.values for r in rows if r.table == "streams" and r.final]
    assert final["outcome"] == "upstream_error" and final["error_code"] == "upstream_closed"
    assert final["generated_tokens"] >= 1
    (ended,) = [r.values for r in rows if r.table == "sessions" and r.values["ended_at"]]
    assert ended["disconnect_reason"] == "upstream_closed"


def test_a_client_that_stops_reading_ends_as_too_slow_and_is_cut_off() -> None:
    """Past `--max-buffered-bytes` unread, as on /v1/stream: the connection is aborted, the
    running response ends `client_too_slow`, and delivered leaves out the deltas in the bytes
    the client never read (DESIGN §4)."""
    exporter = InMemorySpanExporter()
    rows: list[Row] = []

    async def run() -> FakeClient:
        async with simulator() as sim:
            ctx = context(sim.url, exporter, rows)
            ctx.limits.max_buffered_bytes = 500
            client, task = await start_long_answer(ctx)
            for _ in range(9):
                await client.until("response.output_text.delta")
            client.handle.unread = 600  # the client's socket stopped draining: past the bound
            await asyncio.wait_for(client.closed.wait(), scaled(5))
            await asyncio.sleep(0.2)  # the model server goes on until the client is gone
            client.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
            await asyncio.wait_for(task, scaled(5))
            return client

    client = asyncio.run(run())
    frames = [m["text"].encode() for m in client.sent if m["type"] == "websocket.send"]
    lost_from = sum(map(len, frames)) - client.handle.unread  # the client never got the rest
    ends = itertools.accumulate(map(len, frames))
    got = sum(
        1
        for f, end in zip(frames, ends, strict=True)
        if b'"response.output_text.delta"' in f and end <= lost_from
    )
    written = sum(1 for f in frames if b'"response.output_text.delta"' in f)
    (final,) = [r.values for r in rows if r.table == "streams" and r.final]
    assert final["outcome"] == "client_too_slow"
    # Delivered: the deltas whose bytes were all before the unread tail, not every one written.
    assert 1 <= final["delivered_tokens"] == got < written
    assert final["generated_tokens"] > written  # the model server went on meanwhile
    (ended,) = [r.values for r in rows if r.table == "sessions" and r.values["ended_at"]]
    assert ended["disconnect_reason"] == "client_too_slow"
