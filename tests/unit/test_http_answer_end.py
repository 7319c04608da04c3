"""How an HTTP stream's body ends (sidecar.ingress.http): in the write that carries `[DONE]` when
the model server's answer ended with it (a system call less per request), after it otherwise;
either way the stream is `completed`, and uvicorn's "disconnect" once a response is complete is
not a client that left. A scripted model server on a loopback socket decides which case it is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.ingress.app import ClientApp
from sidecar.ledger.writer import Row
from tests.support.timeouts import scaled
from tests.unit.test_realtime_session import context
from tests.unit.test_upstream_http1 import SSE_HEAD, Server, chunk

DELTA = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def chat_scope() -> dict[str, Any]:
    """An ASGI scope as uvicorn gives one for `POST /v1/chat/completions`."""
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }


def answering(end_later: bool) -> Any:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(SSE_HEAD + chunk(DELTA))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunk(DONE) + (b"" if end_later else chunk(b"")))
        await writer.drain()
        if end_later:
            await asyncio.sleep(0.2)
            writer.write(chunk(b""))
            await writer.drain()

    return script


async def relay_once(url: str, rows: list[Row]) -> list[dict[str, Any]]:
    """One streaming request through the ASGI app; its client, like uvicorn, hears
    `http.disconnect` as soon as the response is complete."""
    ctx = context(url, InMemorySpanExporter(), rows)
    await ctx.upstream.start()
    sent: list[dict[str, Any]] = []
    complete = asyncio.Event()
    requests = [{"type": "http.request", "body": json.dumps(REQUEST).encode()}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop(0)
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        assert not complete.is_set(), "a message after the response was complete"
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            complete.set()

    try:
        await asyncio.wait_for(ClientApp(ctx)(chat_scope(), receive, send), scaled(5))
        await asyncio.sleep(0.05)  # a watcher that would still end the stream runs here
    finally:
        await ctx.upstream.close()
    return sent


@pytest.mark.parametrize("end_later", [False, True], ids=["end-with-done", "end-later"])
def test_the_body_ends_with_done_when_the_answer_ended_with_it(end_later: bool) -> None:
    rows: list[Row] = []

    async def main() -> list[dict[str, Any]]:
        async with Server(answering(end_later)) as url:
            return await relay_once(url, rows)

    sent = asyncio.run(main())
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    with_done = [m for m in bodies if DONE in m["body"]]
    assert len(with_done) == 1
    last = bodies[-1]
    if end_later:  # `[DONE]` went out at once; the end followed with the model server's
        assert with_done[0]["more_body"] is True and last["body"] == b""
    else:
        assert last is with_done[0] and not last["more_body"]
    assert not last.get("more_body")
    finals = [r for r in rows if r.table == "streams" and r.final]
    assert [r.values["outcome"] for r in finals] == ["completed"]
    assert finals[0].values["delivered_tokens"] == 1
