"""The HTTP routes accounted as streams (sidecar.upstream.routes: chat and text completions,
Responses, Messages, embeddings), streaming or not, with the same accounting as the WebSocket
path (`ingress=http` on the row).

What the sidecar adds to learn the usage (`include_usage`, continuous usage) is stripped from
what the client receives, so the official SDKs see exactly what they asked for. A client that
did not ask to stream gets the answer the route's reader rebuilt from the stream.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson

from sidecar.accounting.stream import Outcome
from sidecar.context import ServerContext
from sidecar.ingress.asgi import respond_error
from sidecar.ingress.http_delivery import EXTENSION, HttpDelivery
from sidecar.ingress.scope import prompt_chars, tenant_of
from sidecar.relay.lifecycle import Stream, open_stream
from sidecar.security.credentials import KEY_ID
from sidecar.security.limits import Refusal

MAX_BODY = 8 * 1024 * 1024
REVOKED = "revoked_api_key"  # as on the WebSocket path and at the gate
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
JSON_TYPE = (b"content-type", b"application/json")


class Disconnected(Exception):
    """The client left before its request's body had arrived."""


async def relay_http(scope: dict[str, Any], receive: Any, send: Any, ctx: ServerContext) -> None:
    body = await request_body(receive, send)
    if body is None:
        return
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        await respond_error(send, 400, "request body is not valid JSON")
        return
    if not isinstance(request, dict):
        await respond_error(send, 400, "request body must be a JSON object")
        return
    stream = open_stream(
        ctx,
        request,
        request_id=None,
        session_id=None,
        tenant=tenant_of(scope),
        ingress="http",
        path=scope["path"],
        prompt_chars=prompt_chars(request),
        trace=ctx.tracing.http_stream,
    )
    if isinstance(stream, Refusal):
        await respond_error(send, stream.status, stream.message, stream.code)
        return
    await HttpAnswer(scope, receive, send, stream).run()


class HttpAnswer:
    """One HTTP answer: the client side of a `Stream` (sidecar.relay.lifecycle)."""

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, stream: Stream) -> None:
        self.receive, self.send, self.stream = receive, send, stream
        self.ctx, self.account, self.shaped = stream.ctx, stream.account, stream.shaped
        self.reader = stream.reader
        self.started = False
        self.body_ended = False  # the client has the whole answer, its end included
        self.key_id: str | None = scope.get(KEY_ID)
        self.chunks: list[bytes] = []
        # Absent under another ASGI server: then everything written counts as delivered.
        self.delivery: HttpDelivery | None = scope.get("extensions", {}).get(EXTENSION)
        self.strip_usage = not self.shaped.client_wants_usage
        self.named = stream.route.named_events  # Responses and Messages events
        # OpenAI clients cannot ask for continuous usage: when present, the sidecar added it
        # (to chat and completions requests only).
        self.strip_continuous = not self.named and self.ctx.flavour.continuous_usage

    async def run(self) -> None:
        """Relay in this task (the request goes upstream without waiting for another task to be
        scheduled) while a watcher task notices the client leaving and stops the stream."""
        ctx = self.ctx
        watcher = asyncio.get_running_loop().create_task(self._watch())
        if self.key_id is not None:
            ctx.keyed_http.add(self)
        try:
            await self.stream.relay(self)
        finally:
            ctx.keyed_http.discard(self)
            watcher.cancel()

    def revoke(self) -> None:
        """Its API key was revoked: the answer ends now as `rejected`, the upstream is stopped,
        and the client gets an error event (or a 401 if nothing was sent yet)."""
        self.stream.stop(
            Outcome.REJECTED,
            error_code=REVOKED,
            notice=(REVOKED, "this request's API key was revoked", 401, None),
        )

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        if self.body_ended:  # uvicorn says "disconnect" once a response is complete
            return
        delivered = self.delivery.delivered_deltas() if self.delivery is not None else None
        unsent = self.account.written - delivered if delivered is not None else 0
        if self.stream.stop(Outcome.CLIENT_GONE, unsent=unsent):
            self.ctx.metrics.disconnects.labels("client_closed").inc()

    # ClientSink, used by the stream's relay ----------------------------------------------------

    async def opened(self, body_ready: bool) -> None:
        if self.shaped.client_wants_stream:
            # Headers as soon as the model server sent its own, as a plain proxy would: the
            # client then reads them while the model works on the first token, not after
            # it (that cost about 0.5 ms of time to first token on a 2-core machine).
            await self._start_response()

    async def completed(self) -> bool:
        self.stream.completing()
        if self.shaped.client_wants_stream:
            if not self.body_ended:
                self.body_ended = True
                await self.send({"type": "http.response.body", "body": b""})
        else:
            text = b"".join(self.chunks).decode()
            answer = self.reader.answer(self.account, text)
            length = (b"content-length", str(len(answer)).encode())
            await self.send(
                {"type": "http.response.start", "status": 200, "headers": [JSON_TYPE, length]}
            )
            await self.send({"type": "http.response.body", "body": answer})
        self.account.on_written(self.account.deltas - self.account.written)
        return True

    async def failed(
        self, code: str, message: str, status: int, retry_after: float | None = None
    ) -> None:
        """Tell the client why its answer ends: an error status if the headers have not gone
        out yet; after them, an error event in the stream (as OpenAI sends them, and as its
        clients raise them) and the end of the body, never a silently shortened answer."""
        if not self.started:
            headers = [(b"retry-after", b"%d" % math.ceil(retry_after))] if retry_after else None
            await respond_error(self.send, status, message, code, headers)
            return
        if self.body_ended:  # too late: the client has the whole answer
            return
        # Deltas read with the failure (in the same upstream read) go out first.
        await self.flush()
        event = self.reader.error_event(code, message, status)
        await self.send({"type": "http.response.body", "body": event, "more_body": True})
        await self.send({"type": "http.response.body", "body": b""})

    # Sink protocol, used by `pump` ---------------------------------------------------------

    def delta(self, seq: int, text: str) -> None:
        if not self.shaped.client_wants_stream:
            self.chunks.append(text.encode())

    def passthrough(self, payload: str, usage_only: bool) -> None:
        if not self.shaped.client_wants_stream or (usage_only and self.strip_usage):
            return
        if self.strip_continuous and not usage_only and '"usage"' in payload:
            chunk = orjson.loads(payload)
            chunk.pop("usage", None)
            payload = orjson.dumps(chunk).decode()
        elif self.named:
            event = self.reader.event
            if event is not None:
                self.chunks.append(b"event: " + event + b"\n")
        self.chunks.append(b"data: " + payload.encode() + b"\n\n")

    async def flush(self, finished: bool = False) -> None:
        if not self.shaped.client_wants_stream or not self.chunks or self.body_ended:
            return
        if not self.started:
            await self._start_response()
        more = True
        if finished:  # `[DONE]` is in this write: the final row goes first
            self.stream.completing()
            # The model server's answer has ended too (the usual case: its last chunk came
            # with `[DONE]`): the body's end goes in the same write, a system call less.
            response = self.stream.response
            more = response is None or not response.read_to_end()
            self.body_ended = not more
        data, self.chunks = b"".join(self.chunks), []
        await self.send({"type": "http.response.body", "body": data, "more_body": more})
        self.account.written = self.account.deltas
        if self.delivery is not None:
            self.delivery.wrote(len(data), self.account.deltas, self.ctx.clock())

    async def _start_response(self) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})


async def request_body(receive: Any, send: Any) -> bytes | None:
    """The whole request body, or None once the client has been answered (413: too large) or
    has left before sending it."""
    try:
        body = await read_body(receive)
    except Disconnected:
        return None
    if body is None:
        await respond_error(send, 413, "request body is larger than 8 MiB")
    return body


async def read_body(receive: Any) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)
