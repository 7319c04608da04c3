"""A realtime session (`/v1/realtime`, the OpenAI Realtime API): the client's WebSocket relayed
frame by frame to the model server's, and each response in it accounted as a stream.

Two pumps, stopped together when either side ends (the relay pattern of the websockets docs).
Upstream events are read as they pass (sidecar.upstream.realtime): `response.created` opens a
`Stream` (sidecar.relay.lifecycle: admission, span, one ledger row, one ending), text deltas
count and time it, `response.done` ends it with its usage (text and audio tokens apart). Both
sides have heartbeats: the client's is the server's ping/pong (`--heartbeat-interval`), the
upstream's the websockets client's keepalive; a lost heartbeat ends the session.

When the client leaves mid-response, the upstream socket is closed at once (that stops the
generation); what the model server sent until the close is counted as generated, so the
response's row says what was wasted. Delivered: text deltas written to the client's connection,
less those whose bytes it never got when the connection died (as on `/v1/stream`: the writes'
offsets against what its TCP acknowledged, sidecar.ingress.unsent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from sidecar.accounting.ids import time_ordered_id
from sidecar.accounting.stream import Outcome
from sidecar.context import ServerContext
from sidecar.ingress.scope import client_addr, header, query_param, tenant_of
from sidecar.ingress.transport import EXTENSION, ClientGone, TransportHandle
from sidecar.ingress.unsent import Writes, drop_acknowledged, unsent_by_owner
from sidecar.relay.lifecycle import Stream, open_stream
from sidecar.security.credentials import KEY_ID
from sidecar.security.limits import Refusal
from sidecar.telemetry.spans import NOOP_SESSION, SessionTrace
from sidecar.upstream.realtime import (
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseText,
    client_text,
    read_server_event,
)
from sidecar.upstream.sse import Malformed

log = logging.getLogger("sidecar.realtime")

PATH = "/v1/realtime"
INGRESS = "realtime"
HEARTBEAT_MODEL = "all"  # heartbeats are per connection, not per model
MAX_FRAME = 16 * 1024 * 1024  # an audio chunk is base64 in JSON
RTT_WINDOW = 256
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
PASSED_HEADERS = ((b"openai-beta", "OpenAI-Beta"),)  # the beta API asks for it by header
UPSTREAM_CLOSE_TIMEOUT = 2.0
CONNECT_TIMEOUT = 5.0


class RealtimeSession:
    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, ctx: ServerContext):
        self.receive, self.send_asgi, self.ctx = receive, send, ctx
        self.id = time_ordered_id()
        self.tenant = tenant_of(scope)
        self.key_id: str | None = scope.get(KEY_ID)
        self.peer = client_addr(scope)
        self.handle: TransportHandle = scope["extensions"][EXTENSION]  # ClientApp checked it
        query = scope.get("query_string", b"").decode("latin-1")
        self.target = PATH + (f"?{query}" if query else "")
        self.model = query_param(scope, "model") or ctx.default_model
        self.headers = {name: v for key, name in PASSED_HEADERS if (v := header(scope, key))}
        self.trace_headers = [(k, v) for k, v in scope.get("headers", ()) if k in TRACE_HEADERS]
        offered = header(scope, b"sec-websocket-protocol") or ""
        self.subprotocol = "realtime" if "realtime" in offered.split(", ") else None
        self.started_at = ctx.wall_clock()
        self.responses: dict[str, Stream] = {}
        self.upstream: ClientConnection | None = None
        self.trace: SessionTrace = NOOP_SESSION
        self.reason: str | None = None  # why the session ends, once known
        self.t_gone: float | None = None  # when the client was found gone
        self.streams_started = 0
        # Characters of the conversation so far (instructions, items, answers): the prompt
        # estimate of a response that ends without usage.
        self.instructions_chars = self.conversation_chars = 0
        # Where each text delta's write ended in the client's byte stream (sidecar.ingress.unsent).
        self.writes: Writes[Stream] = deque(maxlen=8192)
        self.rtts: list[float] = []
        self.rtt_max = 0.0
        self.missed = 0

    # Connection lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        if (await self.receive())["type"] != "websocket.connect":
            return
        ctx = self.ctx
        try:
            self.upstream = await connect(
                (ctx.realtime_upstream or "") + self.target,
                additional_headers={**self.headers, **ctx.upstream.auth_headers()},
                open_timeout=CONNECT_TIMEOUT,
                ping_interval=ctx.heartbeat_interval,
                ping_timeout=ctx.heartbeat_timeout,
                close_timeout=UPSTREAM_CLOSE_TIMEOUT,
                max_size=MAX_FRAME,
                compression=None,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            log.warning("realtime upstream %s unreachable: %s", ctx.realtime_upstream, exc)
            await self.send_asgi({"type": "websocket.accept", "subprotocol": self.subprotocol})
            await self._close_client(1011, "model server unreachable")
            return
        await self.send_asgi({"type": "websocket.accept", "subprotocol": self.subprotocol})
        self.trace = ctx.tracing.session_span(self.trace_headers, self.id, self.tenant, self.peer)
        ctx.recorder.submit_session(self._session_row(None))
        ctx.sessions.add(self)
        ctx.metrics.sessions_active.inc()
        self.handle.on_rtt, self.handle.on_missed = self._on_rtt, self._on_missed
        try:
            await self._relay()
        finally:
            self._session_ended()

    async def _relay(self) -> None:
        loop = asyncio.get_running_loop()
        downstream = loop.create_task(self._from_upstream())
        try:
            await self._from_client()
        finally:
            if self.reason is None:
                self.reason = "client_closed"
            self.t_gone = self.ctx.clock()
            upstream = self.upstream
            if upstream is not None:
                # Closing the socket stops the model server; what it sent meanwhile is read
                # (and counted) by `_from_upstream` until the close completes.
                with contextlib.suppress(Exception):
                    await upstream.close()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(downstream, UPSTREAM_CLOSE_TIMEOUT)
            self._end_all(self._gone_outcome(), None)

    async def _from_client(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            data = data if data is not None else message.get("bytes", b"")
            added = client_text(data)
            if added is not None:
                kind, chars = added
                if kind == "instructions":
                    self.instructions_chars = chars
                else:
                    self.conversation_chars += chars
            try:
                await upstream.send(data)
            except ConnectionClosed:
                return  # the upstream side ended: `_from_upstream` says why

    async def _from_upstream(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        try:
            async for data in upstream:
                self._on_upstream(data)
        except ConnectionClosed:
            pass
        if self.t_gone is None:  # the model server ended the session, not the client
            self.reason = self.reason or "upstream_closed"
            code, said = upstream.close_code, upstream.close_reason
            why = "model server closed the session" + (f": {said}" if said else "")
            self._end_all(Outcome.UPSTREAM_ERROR, "upstream_closed")
            await self._close_client(code if code and code not in (1005, 1006) else 1011, why)
        if upstream.latency:
            self.trace.upstream_heartbeat(upstream.latency)

    def _on_upstream(self, data: str | bytes) -> None:
        """One upstream frame: account for it, then relay it (unless the client is gone)."""
        ctx = self.ctx
        now = ctx.clock()
        event = read_server_event(data)
        stream = None
        match event:
            case ResponseText(response_id, text):
                stream = self.responses.get(response_id)
                self.conversation_chars += len(text)
                if stream is not None:
                    _, gap = stream.account.on_content(now, text)
                    self._observe(stream, now, gap)
            case ResponseCreated(response_id):
                self._open(response_id)
            case ResponseDone():
                self._done(event)
            case ResponseAudio() | Malformed() | None:
                pass
        if self.t_gone is not None:
            return  # generated after the client left: counted above, never delivered
        with contextlib.suppress(ClientGone):
            self._write(data, stream)

    # Responses ------------------------------------------------------------------------------

    def _open(self, response_id: str) -> None:
        ctx = self.ctx
        stream = open_stream(
            ctx,
            {"model": self.model},
            request_id=response_id,
            session_id=self.id,
            tenant=self.tenant,
            ingress=INGRESS,
            path=PATH,
            prompt_chars=self.instructions_chars + self.conversation_chars,
            trace=self.trace.stream_started,
        )
        if isinstance(stream, Refusal):  # the tenant's daily budget is spent
            cancel = {"type": "response.cancel", "response_id": response_id}
            self._send_upstream(orjson.dumps(cancel).decode())
            error = {
                "type": "invalid_request_error",
                "code": stream.code,
                "message": stream.message,
            }
            with contextlib.suppress(ClientGone):
                self._write(orjson.dumps({"type": "error", "error": error}))
            return
        self.responses[response_id] = stream
        self.streams_started += 1
        ctx.recorder.started(stream.account)

    def _done(self, event: ResponseDone) -> None:
        stream = self.responses.pop(event.response_id, None)
        if stream is None:
            return
        account = stream.account
        usage = event.usage
        if usage is not None:
            account.on_usage(usage.input_tokens, usage.output_tokens, final=True)
            account.cached_prompt_tokens = usage.cached
            account.audio_prompt_tokens = usage.input_audio
            account.audio_generated_tokens = usage.output_audio
        account.finish_reason = event.finish_reason
        if self.t_gone is not None:  # it ended while the upstream was being closed
            self._cancelled(stream, self.ctx.clock() - self.t_gone)
            stream.end(self._gone_outcome(), unsent=self._unsent().get(stream, 0))
        elif event.status in ("completed", "incomplete"):
            # Written before the end: what was relayed reached a live connection.
            account.on_written(account.deltas - account.written)
            stream.end(Outcome.COMPLETED)
        elif event.status == "cancelled":  # the client's response.cancel, or it spoke over it
            stream.end(Outcome.CLIENT_CANCELLED)
        else:
            stream.end(Outcome.UPSTREAM_ERROR, error_code="upstream_error")

    def _end_all(self, outcome: Outcome, error_code: str | None) -> None:
        """The session ends with responses running: each ends so, once."""
        now = self.ctx.clock()
        unsent = self._unsent()
        for stream in list(self.responses.values()):
            if outcome in (Outcome.CLIENT_GONE, Outcome.CLIENT_TOO_SLOW) and self.t_gone:
                self._cancelled(stream, now - self.t_gone)
            stream.end(outcome, error_code=error_code, unsent=unsent.get(stream, 0))
        self.responses.clear()

    def _unsent(self) -> dict[Stream, int]:
        """Text deltas per response that sat in bytes the client never got; empty while the
        connection is alive."""
        handle = self.handle
        if handle.unsent_at_close is None:
            return {}
        return unsent_by_owner(self.writes, handle.bytes_written - handle.unsent_at_close)

    def _cancelled(self, stream: Stream, seconds: float) -> None:
        """The time from "client gone" to "upstream closed", as on the other ingresses."""
        ctx = self.ctx
        ctx.metrics.upstream_cancel.observe(seconds)
        stream.trace.upstream_cancelled(seconds)
        assert ctx.observer is not None
        ctx.observer.sample("upstream_cancel", stream.account.model, seconds, ctx.clock())

    def _observe(self, stream: Stream, now: float, gap: float | None) -> None:
        observer = self.ctx.observer
        assert observer is not None
        if gap is None:
            observer.first_token(stream.account, now - stream.account.t_start)
        else:
            observer.gap(stream.account, gap)

    def _gone_outcome(self) -> Outcome:
        if self.reason == "client_too_slow":
            return Outcome.CLIENT_TOO_SLOW
        return Outcome.SHUTDOWN if self.reason == "server_drain" else Outcome.CLIENT_GONE

    # Server-wide hooks (drain, revoked keys, the once-a-second tick) -----------------------------

    def tick(self, now: float) -> None:
        self.handle.sample()  # what the client's TCP acknowledged, as on /v1/stream
        drop_acknowledged(self.writes, self.handle.acked_bytes)

    def shutdown(self) -> None:
        """Server drain: running responses end as `shutdown`; the client is told to go."""
        self.reason = "server_drain"
        for stream in list(self.responses.values()):
            stream.shutdown()
        self.responses.clear()
        self._close_soon(1012, "the sidecar is shutting down; reconnect to another replica")

    def revoke(self) -> None:
        self.reason = "key_revoked"
        for stream in list(self.responses.values()):
            stream.stop(Outcome.REJECTED, error_code="revoked_api_key")
        self.responses.clear()
        self._close_soon(1008, "this connection's API key was revoked")

    # Writing --------------------------------------------------------------------------------

    def _write(self, data: str | bytes, stream: Stream | None = None) -> None:
        """Write a frame; `stream`: it carries one of that response's text deltas."""
        frame = data.encode() if isinstance(data, str) else data
        handle = self.handle
        handle.write_frames([frame])
        if stream is not None:
            stream.account.on_written(1)
            self.writes.append((handle.bytes_written, stream, 1))
        if handle.buffered() > self.ctx.limits.max_buffered_bytes:
            self.reason = "client_too_slow"
            handle.abort()
            raise ClientGone

    def _send_upstream(self, text: str) -> None:
        if self.upstream is not None:
            task = asyncio.get_running_loop().create_task(self.upstream.send(text))
            task.add_done_callback(_ignore_result)

    async def _close_client(self, code: int, reason: str) -> None:
        with contextlib.suppress(OSError, RuntimeError, ClientGone):
            await self.send_asgi({"type": "websocket.close", "code": code, "reason": reason})

    def _close_soon(self, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._close_client(code, reason))
        task.add_done_callback(_ignore_result)

    # Heartbeat and the session's row ---------------------------------------------------------

    def _on_rtt(self, rtt: float) -> None:
        if len(self.rtts) >= RTT_WINDOW:
            del self.rtts[0]
        self.rtts.append(rtt)
        self.rtt_max = max(self.rtt_max, rtt)
        ctx = self.ctx
        ctx.metrics.heartbeat_rtt.observe(rtt)
        assert ctx.observer is not None
        ctx.observer.sample("heartbeat_rtt", HEARTBEAT_MODEL, rtt, ctx.clock())

    def _on_missed(self) -> None:
        """The transport aborts the connection: `_from_client` sees the disconnect next."""
        self.missed += 1
        self.reason = "heartbeat_timeout"
        self.ctx.metrics.heartbeat_missed.inc()
        self.trace.heartbeat_missed()

    def _session_ended(self) -> None:
        ctx = self.ctx
        self.handle.detach()
        ctx.sessions.discard(self)
        ctx.metrics.sessions_active.dec()
        reason = self.reason or "client_closed"
        ctx.metrics.disconnects.labels(reason).inc()
        row = self._session_row(reason)
        self.trace.end(row["heartbeat_rtt_p50_s"], row["heartbeat_rtt_max_s"], self.missed, reason)
        ctx.recorder.submit_session(row)

    def _session_row(self, reason: str | None) -> dict[str, Any]:
        rtts = sorted(self.rtts)
        return {
            "id": self.id,
            "instance_id": self.ctx.instance_id,
            "tenant": self.tenant,
            "ingress": INGRESS,
            "client_addr": self.peer,
            "started_at": self.started_at,
            "ended_at": self.ctx.wall_clock() if reason is not None else None,
            "disconnect_reason": reason,
            "streams": self.streams_started,
            "heartbeat_rtt_p50_s": rtts[len(rtts) // 2] if rtts else None,
            "heartbeat_rtt_max_s": self.rtt_max if rtts else None,
            "heartbeats_missed": self.missed,
        }


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
