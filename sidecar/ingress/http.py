"""OpenAI HTTP passthrough: `POST /v1/chat/completions` and `/v1/completions`, streaming or not,
with the same accounting as the WebSocket path (`ingress=http` on the row).

What the sidecar adds to learn the usage (`include_usage`, continuous usage) is stripped from
what the client receives, so the official SDKs see exactly what they asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from sidecar.accounting.ids import random_hex_id, time_ordered_id
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.context import ServerContext
from sidecar.errors import UpstreamError
from sidecar.ingress.app import respond_json
from sidecar.ingress.http_delivery import EXTENSION, HttpDelivery
from sidecar.ingress.scope import prompt_chars, tenant_of
from sidecar.relay.pump import pump
from sidecar.security.credentials import KEY_ID
from sidecar.security.limits import Refusal
from sidecar.telemetry.spans import StreamTrace
from sidecar.upstream.flavour import ShapedRequest, shape_request

MAX_BODY = 8 * 1024 * 1024
REVOKED = "revoked_api_key"  # as on the WebSocket path and at the gate
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class _Disconnected(Exception):
    pass


async def relay_http(scope: dict[str, Any], receive: Any, send: Any, ctx: ServerContext) -> None:
    try:
        body = await _read_body(receive)
    except _Disconnected:
        return
    if body is None:
        await _error(send, 413, "request body is larger than 8 MiB")
        return
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        await _error(send, 400, "request body is not valid JSON")
        return
    if not isinstance(request, dict):
        await _error(send, 400, "request body must be a JSON object")
        return
    model = request.get("model")
    account = StreamAccount(
        stream_id=time_ordered_id(),
        request_id=random_hex_id(),
        session_id=None,
        model=model if isinstance(model, str) and model else ctx.default_model,
        tenant=tenant_of(scope),
        ingress="http",
        path=scope["path"],
        started_at=ctx.wall_clock(),
        t_start=ctx.clock(),
        prompt_chars=prompt_chars(request),
        trace_id=random_hex_id(),
    )
    edge, wall, key = ctx.edge, ctx.wall_clock(), account.stream_id  # key: budget reservation
    admitted = edge.admit(request, account.tenant, wall, stream=key) if edge else None
    if isinstance(admitted, Refusal):  # max_tokens cap or the tenant's daily budget
        account.finish(Outcome.REJECTED, ctx.clock(), error_code=admitted.code)
        ctx.recorder.finished(account, ctx.clock())
        await _error(send, admitted.status, admitted.message, admitted.code)
        return
    if admitted is not None:
        request = admitted
    shaped = shape_request(request, ctx.flavour, account.stream_id)
    trace = ctx.tracing.http_stream(account, request)
    account.trace_id = trace.trace_id_hex or account.trace_id
    relay = _HttpRelay(scope, receive, send, ctx, account, shaped, trace)
    await relay.run()


class _HttpRelay:
    def __init__(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        ctx: ServerContext,
        account: StreamAccount,
        shaped: ShapedRequest,
        trace: StreamTrace,
    ) -> None:
        self.scope, self.receive, self.send, self.ctx = scope, receive, send, ctx
        self.account, self.shaped, self.trace = account, shaped, trace
        self.started = False
        self.relay_done = False
        self.t_gone: float | None = None  # when the client was seen leaving mid-relay
        self.t_revoked: float | None = None  # when the API key that admitted it was revoked
        self.key_id: str | None = scope.get(KEY_ID)
        self.task: asyncio.Task[Any] | None = None
        self.chunks: list[bytes] = []
        # Absent under another ASGI server: then everything written counts as delivered.
        self.delivery: HttpDelivery | None = scope.get("extensions", {}).get(EXTENSION)
        self.strip_usage = not shaped.client_wants_usage
        # OpenAI clients cannot ask for continuous usage: when present, the sidecar added it.
        self.strip_continuous = ctx.flavour.continuous_usage

    async def run(self) -> None:
        """Relay in this task (the request goes upstream without waiting for another task to be
        scheduled) while a watcher task notices the client leaving and cancels it."""
        account, ctx = self.account, self.ctx
        relay = self.task = asyncio.current_task()
        assert relay is not None
        watcher = asyncio.get_running_loop().create_task(self._watch(relay))
        if self.key_id is not None:
            ctx.keyed_http.add(self)
        try:
            await self._relay()
        except asyncio.CancelledError:
            if self.t_gone is None and self.t_revoked is None:
                raise  # cancelled from outside: the server is stopping
            relay.uncancel()
        finally:
            self.relay_done = True
            ctx.keyed_http.discard(self)
        if self.t_gone is not None:
            elapsed = ctx.clock() - self.t_gone
            ctx.metrics.upstream_cancel.observe(elapsed)
            self.trace.upstream_cancelled(elapsed)
            ctx.metrics.disconnects.labels("client_closed").inc()
        else:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self.t_revoked is not None and self.t_gone is None:
            elapsed = ctx.clock() - self.t_revoked
            ctx.metrics.upstream_cancel.observe(elapsed)
            self.trace.upstream_cancelled(elapsed)
            await self._fail(401, REVOKED, "this request's API key was revoked")
        if not account.ended:
            account.finish(Outcome.UPSTREAM_ERROR, ctx.clock(), error_code="internal")
        self.trace.end(account)
        ctx.recorder.finished(account, ctx.clock())
        if ctx.edge is not None:
            ctx.edge.charge(
                account.tenant,
                account.prompt_tokens,
                account.generated_tokens,
                ctx.wall_clock(),
                stream=account.stream_id,
            )

    def revoke(self) -> None:
        """Its API key was revoked: the answer ends now as `rejected`, the upstream is stopped
        (the relay's task is cancelled, which drops the model server's connection) and the
        client gets an error event (or a 401 if nothing was sent yet)."""
        if self.relay_done or self.account.ended or self.task is None:
            return
        self.t_revoked = self.ctx.clock()
        self.account.finish(Outcome.REJECTED, self.t_revoked, error_code=REVOKED)
        self.task.cancel()

    async def _watch(self, relay: asyncio.Task[Any]) -> None:
        await self._watch_disconnect()
        if not self.relay_done:
            self.t_gone = self.ctx.clock()
            delivered = self.delivery.delivered_deltas() if self.delivery is not None else None
            unsent = self.account.written - delivered if delivered is not None else 0
            self.account.finish(Outcome.CLIENT_GONE, self.t_gone, unsent=unsent)
            self.trace.client_gone()
            relay.cancel()

    async def _watch_disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    async def _relay(self) -> None:
        account, ctx = self.account, self.ctx
        body = self.shaped.body if self.shaped.client_wants_stream else dict(self.shaped.body)
        response = None
        try:
            headers: dict[str, str] = {}
            self.trace.inject(headers)
            response = await ctx.upstream.stream(account.path, body, account.stream_id, headers)
            if self.shaped.client_wants_stream:
                # Headers as soon as the model server sent its own, as a plain proxy would: the
                # client then reads them while the model works on the first token, not after
                # it (that cost about 0.5 ms of time to first token on a 2-core machine).
                await self._start_response()
            ctx.recorder.started(account)  # after the request left: not on its critical path
            assert ctx.observer is not None
            finished = await pump(
                response.chunks(),
                account,
                self,
                ctx.observer,
                ctx.clock,
                first_token_relayed=response.first_token_relayed,
            )
            complete = finished or account.finish_reason is not None
            if not self.shaped.client_wants_stream:
                await respond_json(self.send, 200, self._assembled())
            elif complete:
                await self.send({"type": "http.response.body", "body": b""})
            else:
                await self._fail(502, "upstream_truncated", "model server closed the stream early")
            account.on_written(account.deltas - account.written)
            account.finish(
                Outcome.COMPLETED if complete else Outcome.UPSTREAM_ERROR,
                ctx.clock(),
                error_code=None if complete else "upstream_truncated",
            )
        except UpstreamError as exc:
            account.finish(Outcome.UPSTREAM_ERROR, ctx.clock(), error_code=exc.code)
            await self._fail(exc.status or 502, exc.code, str(exc))
        except (OSError, TimeoutError) as exc:
            account.finish(Outcome.UPSTREAM_ERROR, ctx.clock(), error_code="upstream_error")
            await self._fail(502, "upstream_error", f"model server connection failed: {exc}")
        finally:
            if response is not None:
                response.close()

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
        self.chunks.append(b"data: " + payload.encode() + b"\n\n")

    async def flush(self, finished: bool = False) -> None:
        if not self.shaped.client_wants_stream or not self.chunks:
            return
        if not self.started:
            await self._start_response()
        data, self.chunks = b"".join(self.chunks), []
        await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.account.written = self.account.deltas
        if self.delivery is not None:
            self.delivery.wrote(len(data), self.account.deltas, self.ctx.clock())

    async def _fail(self, status: int, code: str, message: str) -> None:
        """Tell the client why its answer ends: an error status if the headers have not gone
        out yet; after them, an error event in the stream (as OpenAI sends them, and as its
        clients raise them) and the end of the body, never a silently shortened answer."""
        if not self.started:
            await _error(self.send, status, message, code)
            return
        event = orjson.dumps({"error": {"message": message, "type": code, "code": status}})
        await self.send(
            {"type": "http.response.body", "body": b"data: " + event + b"\n\n", "more_body": True}
        )
        await self.send({"type": "http.response.body", "body": b""})

    async def _start_response(self) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

    def _assembled(self) -> dict[str, Any]:
        """A non-streaming answer rebuilt from the stream the sidecar read."""
        account = self.account
        text = b"".join(self.chunks).decode()
        chat = account.path.endswith("/chat/completions")
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": account.finish_reason,
            "logprobs": None,
        }
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": ("chatcmpl-" if chat else "cmpl-") + account.stream_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(account.started_at),
            "model": account.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": account.prompt_tokens,
                "completion_tokens": account.generated_tokens,
                "total_tokens": account.prompt_tokens + account.generated_tokens,
            },
        }


async def _read_body(receive: Any) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _error(send: Any, status: int, message: str, code: str = "invalid_request") -> None:
    await respond_json(send, status, {"error": {"message": message, "type": code, "code": status}})
