"""One client WebSocket session speaking protocol v1 (DESIGN §3).

The session reads frames and starts one relay task per `generate`; every stream ends exactly
once, through `_end_stream`, whoever ends it (the relay, a cancel, or the connection's end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from array import array
from collections import deque
from typing import Any

from sidecar.accounting.ids import random_hex_id, time_ordered_id
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.context import ServerContext
from sidecar.errors import UpstreamError
from sidecar.ingress import protocol
from sidecar.ingress.protocol import Ack, Cancel, Generate, Ping, Pong, ProtocolError, Resume
from sidecar.ingress.scope import client_addr, prompt_chars, query_param, tenant_of
from sidecar.ingress.stream import LiveStream, WebSocketSink, done_frame
from sidecar.ingress.transport import EXTENSION, ClientGone, TransportHandle
from sidecar.relay.pump import count_unrelayed, pump
from sidecar.security.credentials import EXPIRES_AT, KEY_ID
from sidecar.security.limits import Refusal
from sidecar.telemetry.spans import NOOP_SESSION, SessionTrace
from sidecar.upstream.flavour import shape_request

log = logging.getLogger("sidecar.session")

REVOKED = "revoked_api_key"  # the code the gate refuses a revoked key with, too
EXPIRED = "expired_token"  # likewise for a token past its `exp`
RESUMABLE = frozenset({"client_closed", "heartbeat_timeout", "send_timeout"})
HEARTBEAT_MODEL = "all"  # heartbeats are per connection, not per model
RTT_WINDOW = 256  # heartbeat RTTs kept per session for its median
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
GONE_OUTCOMES = frozenset({Outcome.CLIENT_GONE, Outcome.CLIENT_CANCELLED, Outcome.CLIENT_TOO_SLOW})
# Ends decided here while the model server may still be generating: stop it at once.
STOPPED_OUTCOMES = GONE_OUTCOMES | {Outcome.SHUTDOWN, Outcome.REJECTED}


class WebSocketSession:
    # Slots: an idle connection's session should cost as little memory as possible.
    __slots__ = (
        "closed",
        "ctx",
        "disconnect_reason",
        "expires_at",
        "finished",
        "handle",
        "id",
        "idle",
        "key_id",
        "last_acked",
        "last_app_ping",
        "live",
        "missed",
        "park_timer",
        "parked",
        "peer",
        "receive",
        "rtt_max",
        "rtt_next",
        "rtts",
        "scope",
        "send_asgi",
        "stalled_since",
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
        self.expires_at: float | None = scope.get(EXPIRES_AT)  # its token's, if one admitted it
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
        self.disconnect_reason: str | None = None
        self.closed = False
        # (connection byte offset after a write, the stream it carried, deltas in it): maps
        # bytes the client never received back to the streams they belonged to.
        self.writes: deque[tuple[int, LiveStream, int]] | None = None
        self.stalled_since: float | None = None  # send buffer not draining since (watchdog)
        self.last_acked = -1
        self.last_app_ping = 0.0
        self.trace: SessionTrace = NOOP_SESSION
        self.token = secrets.token_urlsafe(24)
        self.parked = False  # connection lost, streams kept for a resume within the grace window
        self.park_timer: asyncio.TimerHandle | None = None
        self.finished = False
        self.idle = ctx.edge.idle_timer(ctx.clock()) if ctx.edge is not None else None

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
        self.parked = False
        self.peer, self.receive, self.send_asgi, self.handle = (
            new.peer,
            new.receive,
            new.send_asgi,
            new.handle,
        )
        self.key_id, self.expires_at = new.key_id, new.expires_at
        self.closed = False
        self.disconnect_reason = None
        self.writes = None
        self.stalled_since, self.last_acked = None, -1
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
            self._end_connection(self.disconnect_reason or "client_closed")

    def _on_message(self, message: dict[str, Any]) -> bool:
        """Handle one ASGI message; False once the client is gone."""
        kind: str = message["type"]
        if kind == "websocket.receive":
            data = message.get("text")
            self._on_frame(data if data is not None else message.get("bytes", b""))
        return kind != "websocket.disconnect"

    def _end_connection(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        ctx = self.ctx
        ctx.sessions.discard(self)
        ctx.metrics.sessions_active.dec()
        ctx.metrics.disconnects.labels(reason).inc()
        unsent = self._unsent_deltas()
        if ctx.resume_grace > 0 and self.live and reason in RESUMABLE:
            self._park(reason, unsent)
            return
        self._finish(reason, unsent)

    def _park(self, reason: str, unsent: dict[int, int]) -> None:
        """Keep the streams running for `resume_grace` seconds; their output is kept, not sent.
        What sat unsent in the dead connection is no longer counted as written."""
        self.parked = True
        for live in self.live.values():
            live.held = True
            live.account.written -= min(unsent.get(id(live), 0), live.account.written)
        self.ctx.parked[self.token] = self
        loop = asyncio.get_running_loop()
        self.park_timer = loop.call_later(self.ctx.resume_grace, self.expire, reason)

    def expire(self, reason: str) -> None:
        """The grace window passed without a resume (or the server drains): end for good."""
        if self.ctx.parked.get(self.token) is self:
            del self.ctx.parked[self.token]
        if self.park_timer is not None:
            self.park_timer.cancel()
        self.parked = False
        self._finish(reason, {})

    def _finish(self, reason: str, unsent: dict[int, int]) -> None:
        if self.finished:
            return
        self.finished = True
        outcome = Outcome.CLIENT_TOO_SLOW if reason == "client_too_slow" else Outcome.CLIENT_GONE
        for live in list(self.live.values()):
            self._end_stream(live, outcome, unsent=unsent.get(id(live), 0))
        ctx = self.ctx
        row = self._session_row(reason)
        self.trace.end(row["heartbeat_rtt_p50_s"], row["heartbeat_rtt_max_s"], self.missed, reason)
        ctx.recorder.submit_session(row)

    def _unsent_deltas(self) -> dict[int, int]:
        """Deltas per stream that sat in bytes the client never acknowledged."""
        if self.handle is None:
            return {}
        unsent_bytes = self.handle.buffered() if self.handle.unsent_at_close is not None else 0
        lost_from = self.handle.bytes_written - unsent_bytes
        counts: dict[int, int] = {}
        for end, live, deltas in reversed(self.writes or ()):
            if end <= lost_from:
                break
            if live is not None:
                counts[id(live)] = counts.get(id(live), 0) + deltas
        return counts

    def tick(self, now: float) -> None:
        """Called once a second for every open session by one server-wide ticker (a task per
        connection would cost kilobytes each): note what the peer acknowledged, and treat a
        send buffer that stops draining as a dead or stuck peer (DESIGN §10: pings queue
        behind the data and never fire), and an idle connection as done."""
        if self.closed or self.handle is None:
            return
        unacked = self.handle.sample()
        interval = self.ctx.app_ping_interval
        if interval and now - self.last_app_ping >= interval and not self.parked:
            # For clients that cannot see protocol pings (browsers) but want to notice a dead
            # sidecar or path: they answer {"type":"pong","t":...} and track it themselves.
            self.last_app_ping = now
            self._send_soon([protocol.ping(round(self.ctx.wall_clock() * 1000))])
        if self.idle is not None and self.idle.expired(now, busy=bool(self.live)):
            self._idle_out()
            return
        if self.expires_at is not None and not self.live and self.token_expired():
            self._close_expired()
            return
        acked = self.handle.acked_bytes
        if unacked == 0 or acked != self.last_acked:
            self.stalled_since = None
        elif self.stalled_since is None:
            self.stalled_since = now
        elif now - self.stalled_since >= self.ctx.limits.send_timeout:
            self.disconnect_reason = "send_timeout"
            self.handle.abort()
            self._end_connection("send_timeout")
            return
        self.last_acked = acked

    def _idle_out(self) -> None:
        """No frame and no stream for --idle-timeout: close politely (code 1000, "idle")."""
        if self.ctx.edge is not None:
            self.ctx.edge.metrics.limited("idle_timeout")
        self._close(1000, "idle", "idle_timeout")

    def _close(self, code: int, why: str, reason: str) -> None:
        """End the connection for `reason` (the disconnect reason recorded) and tell the client
        with a close frame; the write happens in the background."""
        self.disconnect_reason = reason
        self._end_connection(reason)
        task = asyncio.get_running_loop().create_task(
            self.send_asgi({"type": "websocket.close", "code": code, "reason": why})
        )
        task.add_done_callback(_ignore_result)

    def token_expired(self) -> bool:
        return self.expires_at is not None and self.ctx.wall_clock() >= self.expires_at

    def _close_expired(self) -> None:
        """Its token expired and no stream runs any more: close (1008), as the gate would now
        refuse it. Streams running at the expiry were let finish; new ones were refused."""
        self._close(1008, "token expired", "token_expired")

    def _session_row(self, reason: str | None) -> dict[str, Any]:
        rtts = sorted(self.rtts or ())
        return {
            "id": self.id,
            "instance_id": self.ctx.instance_id,
            "tenant": self.tenant,
            "ingress": "ws",
            "client_addr": self.peer,
            "started_at": self.started_at,
            "ended_at": self.ctx.wall_clock() if self.closed else None,
            "disconnect_reason": reason,
            "streams": self.streams_started,
            "heartbeat_rtt_p50_s": rtts[len(rtts) // 2] if rtts else None,
            "heartbeat_rtt_max_s": self.rtt_max if rtts else None,
            "heartbeats_missed": self.missed,
        }

    def shutdown(self) -> None:
        """Server drain: end what still runs as `shutdown`, then say goodbye with a close frame."""
        for live in list(self.live.values()):
            self._error(live.account.request_id, "shutdown", "the sidecar is shutting down")
            self._end_stream(live, Outcome.SHUTDOWN)
        self._close(1001, "server draining", "server_drain")

    def revoke(self) -> None:
        """Its API key was revoked: its streams end as `rejected` (the upstream is stopped),
        the client is told why, and the connection closes with 1008. A session parked for a
        resume just ends: reconnecting with a revoked key is refused at the gate."""
        if self.parked:
            self.expire("key_revoked")
            return
        if self.closed:
            return
        for live in list(self.live.values()):
            self._error(live.account.request_id, REVOKED, "this connection's API key was revoked")
            self._end_stream(live, Outcome.REJECTED, error_code=REVOKED)
        self._close(1008, "key revoked", "key_revoked")

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

    def _on_missed(self) -> None:
        self.missed += 1
        self.ctx.metrics.heartbeat_missed.inc()
        self.trace.heartbeat_missed()
        self.disconnect_reason = "heartbeat_timeout"
        self._end_connection("heartbeat_timeout")

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
        if live is not None:
            live.account.on_written(deltas)
        if live is not None:  # only deltas matter when mapping unsent bytes to streams
            if self.writes is None:
                self.writes = deque(maxlen=8192)
            self.writes.append((self.handle.bytes_written, live, deltas))
        if self.handle.buffered() > self.ctx.limits.max_buffered_bytes:
            # The client stopped reading: its buffer is shared by all its streams, so the
            # connection goes, and every stream on it ends as client_too_slow.
            self.disconnect_reason = "client_too_slow"
            self.handle.abort()
            self._end_connection("client_too_slow")
            raise ClientGone

    # Client frames -------------------------------------------------------------------------

    def _on_frame(self, data: str | bytes) -> None:
        if self.idle is not None:
            self.idle.touch(self.ctx.clock())
        event = protocol.parse_client_frame(data)
        match event:
            case Generate():
                self._generate(event)
            case Cancel(stream_id):
                live = self.live.get(stream_id)
                if live is None:
                    self._error(stream_id, "unknown_id", f"no running stream with id {stream_id!r}")
                else:
                    self._end_stream(live, Outcome.CLIENT_CANCELLED)
            case Ack(stream_id, seq):
                live = self.live.get(stream_id)
                if live is not None:
                    live.account.on_ack(seq)
            case Resume(stream_id, after_seq):
                self._resume(stream_id, after_seq)
            case Ping(t):
                self._send_soon([protocol.pong(t)])
            case Pong():
                pass
            case ProtocolError(code, message, stream_id):
                self._error(stream_id, code, message)

    def _resume(self, stream_id: str, after_seq: int) -> None:
        """Replay what the client missed after `after_seq`, then continue live."""
        live = self.live.get(stream_id)
        if live is None or live.replay is None:
            code = "unknown_id" if live is None else "resume_unavailable"
            self._error(stream_id, code, f"no resumable stream with id {stream_id!r}")
            return
        account = live.account
        after_seq = min(after_seq, account.deltas)
        oldest = live.replay[0][0] if live.replay else account.deltas + 1
        if after_seq + 1 < oldest:
            self._error(stream_id, "resume_too_late", "the deltas after that seq are gone")
            self._end_stream(live, Outcome.CLIENT_GONE)
            return
        frames = [frame for seq, frame in live.replay if seq > after_seq]
        account.written = after_seq  # the client says it has everything up to there
        live.held = False
        done = live.pending_done
        with contextlib.suppress(ClientGone):
            self._write_now_or_soon(frames + ([done] if done else []), live, len(frames))
        if done is not None:
            self._end_stream(live, Outcome.COMPLETED)

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

    def _generate(self, event: Generate) -> None:
        if self.ctx.draining:
            self._error(event.id, "draining", "this sidecar is shutting down; reconnect elsewhere")
            return
        if event.id in self.live:
            self._error(event.id, "duplicate_id", f"stream {event.id!r} is already running")
            return
        ctx = self.ctx
        if self.token_expired():
            if ctx.edge is not None:
                ctx.edge.metrics.refused(EXPIRED)
            self._error(event.id, EXPIRED, "this connection's token has expired; reconnect")
            return
        if len(self.live) >= ctx.limits.max_streams_per_connection:
            if ctx.edge is not None:
                ctx.edge.metrics.limited("streams_per_connection")
            self._error(
                event.id, "too_many_streams", "too many concurrent streams on this connection"
            )
            return
        model = event.body.get("model")
        account = StreamAccount(
            stream_id=time_ordered_id(),
            request_id=event.id,
            session_id=self.id,
            model=model if isinstance(model, str) and model else ctx.default_model,
            tenant=self.tenant,
            ingress="ws",
            path=event.path,
            started_at=ctx.wall_clock(),
            t_start=ctx.clock(),
            prompt_chars=prompt_chars(event.body),
            trace_id=random_hex_id(),
        )
        edge, wall, key = ctx.edge, ctx.wall_clock(), account.stream_id  # key: budget reservation
        admitted = edge.admit(event.body, account.tenant, wall, stream=key) if edge else None
        if isinstance(admitted, Refusal):  # max_tokens cap or the tenant's daily budget
            self._error(event.id, admitted.code, admitted.message)
            account.finish(Outcome.REJECTED, ctx.clock(), error_code=admitted.code)
            ctx.recorder.finished(account, ctx.clock())
            return
        if admitted is not None:
            event = Generate(event.id, admitted, event.path)
        live = LiveStream(account, ctx.resume_buffer if ctx.resume_grace > 0 else 0)
        live.trace = self.trace.stream_started(account, event.body)
        account.trace_id = live.trace.trace_id_hex or account.trace_id
        self.live[event.id] = live
        self.streams_started += 1
        live.task = asyncio.get_running_loop().create_task(self._relay(live, event))
        live.task.add_done_callback(lambda _task: live.release() if live.account.ended else None)

    # One stream ----------------------------------------------------------------------------

    async def _relay(self, live: LiveStream, event: Generate) -> None:
        account, ctx = live.account, self.ctx
        shaped = shape_request(event.body, ctx.flavour, account.stream_id)
        try:
            headers: dict[str, str] = {}
            live.trace.inject(headers)
            live.response = await ctx.upstream.stream(
                event.path, shaped.body, account.stream_id, headers
            )
            ctx.recorder.started(account)  # after the request left: not on its critical path
            start = protocol.start(account.request_id, account.trace_id or "")
            if live.response.body_ready():  # the first chunk came with the headers: one write
                sink = WebSocketSink(self, live, start)
            else:  # the model server is still thinking: tell the client it has accepted
                await self._write([start])
                sink = WebSocketSink(self, live, None)
            assert ctx.observer is not None
            finished = await pump(
                live.response.chunks(),
                account,
                sink,
                ctx.observer,
                ctx.clock,
                live.decoder,
                live.response.first_token_relayed,
            )
            if finished or account.finish_reason:
                if not sink.done_sent:
                    done = done_frame(account)
                    if live.held:  # the client is away: deliver the end when it resumes
                        live.pending_done = done
                        return
                    await self._write([done])
                self._end_stream(live, Outcome.COMPLETED)
            else:
                self._fail(live, "upstream_truncated", "model server closed the stream early")
        except UpstreamError as exc:
            self._fail(live, exc.code, str(exc))
        except (OSError, TimeoutError) as exc:
            self._fail(live, "upstream_error", f"model server connection failed: {exc}")
        except ClientGone:
            self._end_stream(live, Outcome.CLIENT_GONE)
        except asyncio.CancelledError:
            if not live.account.ended:  # cancelled from outside (shutdown)
                self._end_stream(live, Outcome.SHUTDOWN)
        finally:
            self._close_upstream(live)

    def answered(self, live: LiveStream) -> None:
        """Its `done` went out: the client may reuse the id at once, while the relay still
        reads the end of the upstream body (which returns the connection to the pool)."""
        self._forget(live)

    def _forget(self, live: LiveStream) -> None:
        """No longer a running stream of this session (a newer stream may reuse its id)."""
        if self.live.get(live.account.request_id) is live:
            del self.live[live.account.request_id]
        if not self.live:  # byte offsets only map unsent bytes to running streams
            self.writes = None

    def _fail(self, live: LiveStream, code: str, message: str) -> None:
        assert self.ctx.observer is not None
        self.ctx.observer.failed_before_first_token(live.account, self.ctx.clock())
        self._error(live.account.request_id, code, message)
        self._end_stream(live, Outcome.UPSTREAM_ERROR, error_code=code)

    def _end_stream(
        self, live: LiveStream, outcome: Outcome, error_code: str | None = None, unsent: int = 0
    ) -> None:
        account, ctx = live.account, self.ctx
        now = ctx.clock()
        if not account.finish(outcome, now, error_code=error_code, unsent=unsent):
            return
        self._forget(live)
        if outcome in STOPPED_OUTCOMES:
            if outcome in GONE_OUTCOMES:
                live.trace.client_gone()
            live.t_gone = now
            self._close_upstream(live)
            if live.task is not None and live.task is not asyncio.current_task():
                live.task.cancel()
        live.trace.end(account)
        ctx.recorder.finished(account, now)
        if ctx.edge is not None:
            ctx.edge.charge(
                account.tenant,
                account.prompt_tokens,
                account.generated_tokens,
                ctx.wall_clock(),
                stream=account.stream_id,
            )

    def _close_upstream(self, live: LiveStream) -> None:
        response = live.response
        if response is None or response.closed:
            return
        if live.account.outcome is not Outcome.COMPLETED:
            count_unrelayed(response.take_buffered(), live.decoder, live.account, self.ctx.clock())
        response.close()
        if live.t_gone is not None:
            now = self.ctx.clock()
            elapsed = now - live.t_gone
            self.ctx.metrics.upstream_cancel.observe(elapsed)
            live.trace.upstream_cancelled(elapsed)
            assert self.ctx.observer is not None
            self.ctx.observer.sample("upstream_cancel", live.account.model, elapsed, now)


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
