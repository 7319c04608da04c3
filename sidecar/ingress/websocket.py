"""One client WebSocket session speaking protocol v1 (DESIGN §3): the asyncio shell around
`SessionMachine` (sidecar.ingress.session_state), which decides; this module reads messages,
feeds the machine and carries out its actions (writes, streams, closes).

Each `generate` runs as a `Stream` (sidecar.relay.lifecycle) in its own task; every stream ends
exactly once, through the lifecycle, whoever ends it (the relay, a cancel, the connection's end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from array import array
from collections import deque
from typing import Any

from sidecar.accounting.ids import time_ordered_id
from sidecar.accounting.stream import Outcome
from sidecar.context import ServerContext
from sidecar.ingress import protocol
from sidecar.ingress.protocol import Generate
from sidecar.ingress.scope import client_addr, prompt_chars, query_param, tenant_of
from sidecar.ingress.session_state import (
    EXPIRED,
    Abort,
    AckStream,
    Action,
    Close,
    ConnectionEnded,
    Refused,
    ReplayStream,
    Send,
    SessionEnded,
    SessionMachine,
    SessionRules,
    StartStream,
    State,
    StopStream,
)
from sidecar.ingress.stream import LiveStream, WebSocketSink, done_frame
from sidecar.ingress.transport import EXTENSION, ClientGone, TransportHandle
from sidecar.relay.lifecycle import open_stream
from sidecar.security.credentials import EXPIRES_AT, KEY_ID
from sidecar.security.limits import Refusal
from sidecar.telemetry.spans import NOOP_SESSION, SessionTrace

log = logging.getLogger("sidecar.session")

HEARTBEAT_MODEL = "all"  # heartbeats are per connection, not per model
RTT_WINDOW = 256  # heartbeat RTTs kept per session for its median
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


class WebSocketSession:
    # Slots: an idle connection's session should cost as little memory as possible.
    __slots__ = (
        "ctx",
        "handle",
        "id",
        "key_id",
        "live",
        "machine",
        "missed",
        "park_timer",
        "peer",
        "receive",
        "rtt_max",
        "rtt_next",
        "rtts",
        "scope",
        "send_asgi",
        "started_at",
        "streams_started",
        "tenant",
        "token",
        "trace",
        "writes",
    )

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, ctx: ServerContext):
        self.receive, self.send_asgi, self.ctx = receive, send, ctx
        # Kept only until the upgrade is accepted (see `run`).
        self.scope: dict[str, Any] | None = scope
        self.id = time_ordered_id()
        self.tenant = tenant_of(scope)
        self.key_id: str | None = scope.get(KEY_ID)  # the API key that admitted it, if any
        self.peer = client_addr(scope)
        self.handle: TransportHandle | None = scope.get("extensions", {}).get(EXTENSION)
        self.live: dict[str, LiveStream] = {}
        self.started_at = ctx.wall_clock()
        self.streams_started = 0
        # Created on first use: an idle connection should cost as little as possible.
        # The latest pongs, for the median: a ring of doubles (a deque of floats would
        # cost ~9 KiB per connection once full).
        self.rtts: array[float] | None = None
        self.rtt_next = 0
        self.rtt_max = 0.0
        self.missed = 0
        # (connection byte offset after a write, the stream it carried, deltas in it): maps
        # bytes the client never received back to the streams they belonged to.
        self.writes: deque[tuple[int, LiveStream, int]] | None = None
        self.trace: SessionTrace = NOOP_SESSION
        self.token = secrets.token_urlsafe(24)
        self.park_timer: asyncio.TimerHandle | None = None
        rules = SessionRules(
            ctx.limits.max_streams_per_connection,
            ctx.limits.send_timeout,
            ctx.app_ping_interval,
            ctx.resume_grace,
        )
        idle = ctx.edge.idle_timer(ctx.clock()) if ctx.edge is not None else None
        self.machine = SessionMachine(rules, idle, scope.get(EXPIRES_AT))

    @property
    def parked(self) -> bool:
        return self.machine.state is State.PARKED

    @property
    def expires_at(self) -> float | None:
        return self.machine.expires_at

    # Connection lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        # Read the upgrade request before accepting and keep none of it: this coroutine lives
        # as long as the connection, and the server drops the request headers once accepted.
        assert self.scope is not None
        token = query_param(self.scope, "resume_token")
        trace_headers = [(k, v) for k, v in self.scope.get("headers", ()) if k in TRACE_HEADERS]
        self.scope = None
        await self.send_asgi({"type": "websocket.accept"})
        ctx = self.ctx
        if token is not None:
            parked = ctx.parked.pop(token, None)
            if parked is not None and parked.tenant == self.tenant:
                await parked.attach(self)
                return
        self.trace = ctx.tracing.session_span(trace_headers, self.id, self.tenant, self.peer)
        ctx.recorder.submit_session(self._session_row(None))
        await self._serve(resume_failed=token is not None)

    async def attach(self, new: WebSocketSession) -> None:
        """A reconnect with this session's resume token: the new connection, and the
        credential that admitted it, take over."""
        if self.park_timer is not None:
            self.park_timer.cancel()
        self.peer, self.receive, self.send_asgi, self.handle = (
            new.peer,
            new.receive,
            new.send_asgi,
            new.handle,
        )
        self.key_id = new.key_id
        self.writes = None
        self._do(self.machine.attach(new.expires_at))
        await self._serve()

    async def _serve(self, resume_failed: bool = False) -> None:
        ctx = self.ctx
        ctx.sessions.add(self)
        ctx.metrics.sessions_active.inc()
        if self.handle is not None:
            self.handle.on_rtt = self._on_rtt
            self.handle.on_missed = self._on_missed
        try:
            await self._write([protocol.hello(self.id, self.token, ctx.heartbeat_interval)])
            if resume_failed:
                self._error(None, "resume_expired", "that session is gone; this is a new one")
            # No local holds a message while waiting for the next: a client's last frame
            # (up to the size limit) would stay in memory for as long as it idles.
            while self._on_message(await self.receive()):
                pass
        except ClientGone:
            pass
        finally:
            self._do(self.machine.connection_lost("client_closed", self._unsent_deltas()))

    def _on_message(self, message: dict[str, Any]) -> bool:
        """Handle one ASGI message; False once the client is gone."""
        kind: str = message["type"]
        if kind == "websocket.receive":
            data = message.get("text")
            data = data if data is not None else message.get("bytes", b"")
            ctx = self.ctx
            self._do(self.machine.frame(data, ctx.clock(), ctx.wall_clock(), ctx.draining))
        return kind != "websocket.disconnect"

    def tick(self, now: float) -> None:
        """Called once a second for every open session by one server-wide ticker (a task per
        connection would cost kilobytes each)."""
        if self.machine.state is not State.OPEN or self.handle is None:
            return
        unacked = self.handle.sample()
        wall = self.ctx.wall_clock()
        acked = self.handle.acked_bytes
        self._do(self.machine.tick(now, wall, unacked, acked))

    def shutdown(self) -> None:
        """Server drain: end what still runs as `shutdown`, then say goodbye with a close frame."""
        self._do(self.machine.drain())

    def revoke(self) -> None:
        """Its API key was revoked (see SessionMachine.revoke)."""
        self._do(self.machine.revoke())

    def expire(self, reason: str) -> None:
        """The grace window passed without a resume (or the server drains): end for good."""
        self._do(self.machine.expire(reason))

    def _on_missed(self) -> None:
        self.missed += 1
        self.ctx.metrics.heartbeat_missed.inc()
        self.trace.heartbeat_missed()
        self._do(self.machine.heartbeat_missed(self._unsent_deltas()))

    # Carrying out the machine's actions -------------------------------------------------------

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Send(frames):
                    self._send_soon(frames)
                case StartStream(event):
                    self._start(event)
                case StopStream(stream_id, outcome, error_code, unsent, confirm):
                    live = self.live.get(stream_id)
                    if live is not None:
                        live.stream.stop(outcome, error_code=error_code, unsent=unsent)
                        if confirm:  # a terminal frame per id, with the counts after the stop
                            self._send_soon([done_frame(live.account, "cancelled")])
                case AckStream(stream_id, seq):
                    live = self.live.get(stream_id)
                    if live is not None:
                        live.account.on_ack(seq)
                case ReplayStream(stream_id, after_seq):
                    self._replay(self.live[stream_id], after_seq)
                case Close(code, why):
                    task = asyncio.get_running_loop().create_task(
                        self.send_asgi({"type": "websocket.close", "code": code, "reason": why})
                    )
                    task.add_done_callback(_ignore_result)
                case Abort(reason):
                    if self.handle is not None:
                        self.handle.abort()  # first: it fixes what never left the buffers
                    self._do(self.machine.connection_lost(reason, self._unsent_deltas()))
                case ConnectionEnded(reason, parked, unsent):
                    self._connection_ended(reason, parked, unsent)
                case SessionEnded(reason):
                    self._session_ended(reason)
                case Refused(limit):
                    self._count_refusal(limit)

    def _connection_ended(self, reason: str, parked: bool, unsent: dict[str, int]) -> None:
        ctx = self.ctx
        ctx.sessions.discard(self)
        ctx.metrics.sessions_active.dec()
        ctx.metrics.disconnects.labels(reason).inc()
        if not parked:
            return
        # The streams run on for `resume_grace` seconds; their output is kept, not sent. What
        # sat unsent in the dead connection is no longer counted as written.
        for stream_id, live in self.live.items():
            live.held = True
            live.account.written -= min(unsent.get(stream_id, 0), live.account.written)
        ctx.parked[self.token] = self
        loop = asyncio.get_running_loop()
        self.park_timer = loop.call_later(ctx.resume_grace, self.expire, reason)

    def _session_ended(self, reason: str) -> None:
        ctx = self.ctx
        if ctx.parked.get(self.token) is self:
            del ctx.parked[self.token]
        if self.park_timer is not None:
            self.park_timer.cancel()
        row = self._session_row(reason)
        self.trace.end(row["heartbeat_rtt_p50_s"], row["heartbeat_rtt_max_s"], self.missed, reason)
        ctx.recorder.submit_session(row)

    def _count_refusal(self, limit: str) -> None:
        edge = self.ctx.edge
        if edge is None:
            return
        if limit == EXPIRED:
            edge.metrics.refused(EXPIRED)
        else:
            edge.metrics.limited(limit)

    def _unsent_deltas(self) -> dict[str, int]:
        """Deltas per running stream that sat in bytes the client never acknowledged."""
        if self.handle is None:
            return {}
        unsent_bytes = self.handle.buffered() if self.handle.unsent_at_close is not None else 0
        lost_from = self.handle.bytes_written - unsent_bytes
        counts: dict[str, int] = {}
        for end, live, deltas in reversed(self.writes or ()):
            if end <= lost_from:
                break
            stream_id = live.account.request_id
            if self.live.get(stream_id) is live:
                counts[stream_id] = counts.get(stream_id, 0) + deltas
        return counts

    def _session_row(self, reason: str | None) -> dict[str, Any]:
        rtts = sorted(self.rtts or ())
        return {
            "id": self.id,
            "instance_id": self.ctx.instance_id,
            "tenant": self.tenant,
            "ingress": "ws",
            "client_addr": self.peer,
            "started_at": self.started_at,
            "ended_at": self.ctx.wall_clock() if reason is not None else None,
            "disconnect_reason": reason,
            "streams": self.streams_started,
            "heartbeat_rtt_p50_s": rtts[len(rtts) // 2] if rtts else None,
            "heartbeat_rtt_max_s": self.rtt_max if rtts else None,
            "heartbeats_missed": self.missed,
        }

    def _on_rtt(self, rtt: float) -> None:
        if self.rtts is None:
            self.rtts = array("d")
        if len(self.rtts) < RTT_WINDOW:
            self.rtts.append(rtt)
        else:
            self.rtts[self.rtt_next] = rtt
            self.rtt_next = (self.rtt_next + 1) % RTT_WINDOW
        self.rtt_max = max(self.rtt_max, rtt)
        self.ctx.metrics.heartbeat_rtt.observe(rtt)
        assert self.ctx.observer is not None
        self.ctx.observer.sample("heartbeat_rtt", HEARTBEAT_MODEL, rtt, self.ctx.clock())

    # Streams -----------------------------------------------------------------------------------

    def _start(self, event: Generate) -> None:
        ctx = self.ctx
        stream = open_stream(
            ctx,
            event.body,
            request_id=event.id,
            session_id=self.id,
            tenant=self.tenant,
            ingress="ws",
            path=event.path,
            prompt_chars=prompt_chars(event.body),
            trace=self.trace.stream_started,
        )
        if isinstance(stream, Refusal):  # max_tokens cap or the tenant's daily budget
            self.machine.stream_ended(event.id)
            self._error(event.id, stream.code, stream.message)
            return
        live = LiveStream(stream, ctx.resume_buffer if ctx.resume_grace > 0 else 0)
        stream.on_end = lambda _stream: self._forget(live)
        self.live[event.id] = live
        self.streams_started += 1
        task = asyncio.get_running_loop().create_task(stream.relay(WebSocketSink(self, live)))
        task.add_done_callback(lambda _task: live.release() if live.account.ended else None)

    def answered(self, live: LiveStream) -> None:
        """Its `done` went out: the client may reuse the id at once, while the relay still
        reads the end of the upstream body (which returns the connection to the pool)."""
        self._forget(live)

    def _forget(self, live: LiveStream) -> None:
        """No longer a running stream of this session (a newer stream may reuse its id)."""
        stream_id = live.account.request_id
        if self.live.get(stream_id) is live:
            del self.live[stream_id]
            self.machine.stream_ended(stream_id)
        if not self.live:  # byte offsets only map unsent bytes to running streams
            self.writes = None

    def _replay(self, live: LiveStream, after_seq: int) -> None:
        """Replay what the client missed after `after_seq`, then continue live."""
        stream_id, account = live.account.request_id, live.account
        if live.replay is None:
            self._error(
                stream_id, "resume_unavailable", f"no resumable stream with id {stream_id!r}"
            )
            return
        after_seq = min(after_seq, account.deltas)
        oldest = live.replay[0][0] if live.replay else account.deltas + 1
        if after_seq + 1 < oldest:
            self._error(stream_id, "resume_too_late", "the deltas after that seq are gone")
            live.stream.stop(Outcome.CLIENT_GONE)
            return
        frames = [frame for seq, frame in live.replay if seq > after_seq]
        account.written = after_seq  # the client says it has everything up to there
        live.held = False
        done = live.pending_done
        with contextlib.suppress(ClientGone):
            self._write_now_or_soon(frames + ([done] if done else []), live, len(frames))
        if done is not None:
            live.stream.end(Outcome.COMPLETED)

    # Writing -------------------------------------------------------------------------------

    async def _write(
        self, frames: list[bytes], live: LiveStream | None = None, deltas: int = 0
    ) -> None:
        if self.parked or (live is not None and live.held):
            return  # kept in the stream's replay buffer for a resume
        if self.handle is not None:
            self._write_now(frames, live, deltas)
            return
        for frame in frames:  # plain ASGI: one message per frame
            try:
                await self.send_asgi({"type": "websocket.send", "text": frame.decode()})
            except (OSError, RuntimeError):
                raise ClientGone from None
        if live is not None:
            live.account.on_written(deltas)

    def _write_now(
        self, frames: list[bytes], live: LiveStream | None = None, deltas: int = 0
    ) -> None:
        assert self.handle is not None
        self.handle.write_frames(frames)
        if live is not None:  # only deltas matter when mapping unsent bytes to streams
            live.account.on_written(deltas)
            if self.writes is None:
                self.writes = deque(maxlen=8192)
            self.writes.append((self.handle.bytes_written, live, deltas))
        if self.handle.buffered() > self.ctx.limits.max_buffered_bytes:
            self._do(self.machine.too_slow())
            raise ClientGone

    def _write_now_or_soon(self, frames: list[bytes], live: LiveStream, deltas: int) -> None:
        if self.handle is not None:
            self._write_now(frames, live, deltas)
        else:
            task = asyncio.get_running_loop().create_task(self._write(frames, live, deltas))
            task.add_done_callback(_ignore_result)

    def _error(self, stream_id: str | None, code: str, message: str) -> None:
        self._send_soon([protocol.error(stream_id, code, message)])

    def _send_soon(self, frames: list[bytes]) -> None:
        if self.handle is not None:
            with contextlib.suppress(ClientGone):
                self._write_now(frames)
            return
        task = asyncio.get_running_loop().create_task(self._write(frames))
        task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
