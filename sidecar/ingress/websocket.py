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
from sidecar.ingress.replay import ReplayBudget, ReplayBuffer
from sidecar.ingress.scope import client_addr, prompt_chars, query_param, tenant_of
from sidecar.ingress.session_state import (
    EXPIRED,
    Abort,
    AckStream,
    Action,
    Close,
    ConnectionEnded,
    KeepParked,
    Refused,
    RemoteDelivered,
    ReplayStream,
    Send,
    SessionEnded,
    SessionMachine,
    SessionRules,
    StartStream,
    State,
    StopStream,
)
from sidecar.ingress.stream import LiveStream, WebSocketSink, cancelled_frame
from sidecar.ingress.transport import EXTENSION, ClientGone, TransportHandle
from sidecar.ingress.unsent import drop_acknowledged, unsent_by_owner
from sidecar.relay.lifecycle import open_stream
from sidecar.resume.records import ParkedSession
from sidecar.resume.remote import Follower
from sidecar.security.credentials import EXPIRES_AT, KEY_ID
from sidecar.security.limits import Refusal
from sidecar.telemetry.spans import NOOP_SESSION, SessionTrace

log = logging.getLogger("sidecar.session")

HEARTBEAT_MODEL = "all"  # heartbeats are per connection, not per model
RTT_WINDOW = 256  # heartbeat RTTs kept per session for its median
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_NOT_ENDED = (None, Outcome.COMPLETED)  # completed: its `done` was published when kept


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
        "replay_budget",
        "resumed_id",
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
        # Every write, delivered count and heartbeat goes through it: `serve` runs the
        # WebSocket ingress on its own protocol (ClientApp refuses a server without it).
        self.handle: TransportHandle = scope["extensions"][EXTENSION]
        # Its streams: relayed here, or followed here from the replica that relays them.
        self.live: dict[str, LiveStream | Follower] = {}
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
        self.writes: deque[tuple[int, LiveStream | Follower, int]] | None = None
        self.trace: SessionTrace = NOOP_SESSION
        self.token = secrets.token_urlsafe(24)
        # The protocol session id it continues, when resumed from a session parked on another
        # replica (its ledger row is this replica's own, under `id`).
        self.resumed_id: str | None = None
        self.park_timer: asyncio.TimerHandle | None = None
        self.replay_budget: ReplayBudget | None = None  # made with its first resumable stream
        rules = SessionRules(
            ctx.limits.max_streams_per_connection,
            ctx.limits.send_timeout,
            ctx.app_ping_interval,
            ctx.resume_grace,
        )
        idle = ctx.edge.idle_timer(ctx.clock()) if ctx.edge is not None else None
        self.machine = SessionMachine(rules, idle, scope.get(EXPIRES_AT))

    @property
    def session_id(self) -> str:
        """The session id the client knows (`hello`)."""
        return self.resumed_id or self.id

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
        remote: ParkedSession | None = None
        if token is not None:
            parked = ctx.parked.pop(token, None)
            if parked is not None and parked.tenant == self.tenant:
                await parked.attach(self)
                return
            remote = await ctx.resume_store.claim(token, self.tenant)
            if remote is not None:  # parked on another replica: continue it here
                self.token, self.resumed_id = token, remote.session_id
                self._follow(remote)
        self.trace = ctx.tracing.session_span(trace_headers, self.id, self.tenant, self.peer)
        ctx.recorder.submit_session(self._session_row(None))
        await self._serve(resume_failed=token is not None and remote is None)

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
        self.ctx.resume_store.unpark(self)
        self._do(self.machine.attach(new.expires_at))
        # Streams of this session parked on other replicas meanwhile (it moved, then came back).
        remote = await self.ctx.resume_store.claim(self.token, self.tenant, wait=False)
        if remote is not None:
            self._follow(remote)
        await self._serve()

    def _follow(self, remote: ParkedSession) -> None:
        """Take on the streams another replica relays for this session: the client may resume,
        ack and cancel them here."""
        adopted = [sid for sid in remote.owners if sid not in self.live]
        for stream_id in adopted:
            follower = self.ctx.resume_store.follow(self.token, stream_id, remote.owners[stream_id])
            follower.on_end = self._forget
            self.live[stream_id] = follower
        self.machine.adopt(adopted)

    async def _serve(self, resume_failed: bool = False) -> None:
        ctx = self.ctx
        ctx.sessions.add(self)
        ctx.metrics.sessions_active.inc()
        self.handle.on_rtt = self._on_rtt
        self.handle.on_missed = self._on_missed
        try:
            hello = protocol.hello(self.session_id, self.token, ctx.heartbeat_interval)
            self._write([hello])
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
        if self.machine.state is not State.OPEN:
            return
        unacked = self.handle.sample()
        wall = self.ctx.wall_clock()
        acked = self.handle.acked_bytes
        if self.writes:
            drop_acknowledged(self.writes, acked)
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
                    self._send_quietly(frames)
                case StartStream(event):
                    self._start(event)
                case StopStream(stream_id, outcome, error_code, unsent, confirm):
                    live = self.live.get(stream_id)
                    if live is not None:
                        live.stream.stop(outcome, error_code=error_code, unsent=unsent)
                        if confirm:  # a terminal frame per id, with the counts after the stop
                            self._send_quietly([cancelled_frame(live.account)])
                case AckStream(stream_id, seq):
                    live = self.live.get(stream_id)
                    if live is not None:
                        live.account.on_ack(seq)
                        if live.replay is not None:  # a resume never asks for these again
                            live.replay.discard_through(seq)
                        if isinstance(live, Follower):
                            live.ack(seq)
                case ReplayStream(stream_id, after_seq):
                    self._replay(self.live[stream_id], after_seq)
                case KeepParked():
                    self._park_for(self.ctx.resume_grace, self.machine.reason or "client_closed")
                case RemoteDelivered(stream_id, seq, final):
                    self._delivered_elsewhere(stream_id, seq, final)
                case Close(code, why):
                    task = asyncio.get_running_loop().create_task(
                        self.send_asgi({"type": "websocket.close", "code": code, "reason": why})
                    )
                    task.add_done_callback(_ignore_result)
                case Abort(reason):
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
        self.handle.detach()
        ctx.sessions.discard(self)
        ctx.metrics.sessions_active.dec()
        ctx.metrics.disconnects.labels(reason).inc()
        if not parked:
            return
        # The streams run on for `resume_grace` seconds; their output is kept, not sent. What
        # sat unsent in the dead connection is no longer counted as written.
        for stream_id, live in list(self.live.items()):
            lost = min(unsent.get(stream_id, 0), live.account.written)
            if isinstance(live, Follower):  # its owner parks it again, for any replica
                live.detach(lost)
                continue
            live.held = True
            live.account.written -= lost
        if not self.live:  # only followed streams: nothing is left to resume here
            self._do(self.machine.expire(reason))
            return
        ctx.parked[self.token] = self
        ctx.resume_store.park(self)
        self._park_for(ctx.resume_grace, reason)

    def _park_for(self, seconds: float, reason: str) -> None:
        """Stay parked for `seconds` more (a replica serving the client elsewhere spoke)."""
        if self.park_timer is not None:
            self.park_timer.cancel()
        loop = asyncio.get_running_loop()
        self.park_timer = loop.call_later(seconds, self.expire, reason)

    def remote_control(self, op: str, stream_id: str, seq: int) -> None:
        """A replica serving this parked session's client reports (sidecar.resume)."""
        self._do(self.machine.remote_control(op, stream_id, seq))

    def _delivered_elsewhere(self, stream_id: str, seq: int, final: bool) -> None:
        live = self.live.get(stream_id)
        if not isinstance(live, LiveStream):
            return
        live.account.written = min(seq, live.account.deltas)
        if final and live.pending_done is not None:
            live.stream.end(Outcome.COMPLETED)

    def _session_ended(self, reason: str) -> None:
        ctx = self.ctx
        if ctx.parked.get(self.token) is self:
            del ctx.parked[self.token]
        ctx.resume_store.unpark(self)
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
        unsent_bytes = self.handle.buffered() if self.handle.unsent_at_close is not None else 0
        lost = unsent_by_owner(self.writes or deque(), self.handle.bytes_written - unsent_bytes)
        return {
            live.account.request_id: deltas
            for live, deltas in lost.items()
            if self.live.get(live.account.request_id) is live
        }

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
        live = LiveStream(stream, self._replay_buffer())
        stream.on_end = lambda _stream: self._forget(live)
        self.live[event.id] = live
        self.streams_started += 1
        task = asyncio.get_running_loop().create_task(stream.relay(WebSocketSink(self, live)))
        task.add_done_callback(lambda _task: live.release() if live.account.ended else None)

    def _replay_buffer(self) -> ReplayBuffer | None:
        ctx = self.ctx
        if ctx.resume_grace <= 0:
            return None
        if self.replay_budget is None:
            self.replay_budget = ReplayBudget(ctx.resume_buffer_bytes, ctx.replay_memory)
        return ReplayBuffer(ctx.resume_buffer, self.replay_budget)

    def answered(self, live: LiveStream) -> None:
        """Its `done` went out: the client may reuse the id at once, while the relay still
        reads the end of the upstream body (which returns the connection to the pool)."""
        self._forget(live)

    def kept_done(self, live: LiveStream) -> None:
        """It finished while its client was away; its `done` waits for the resume."""
        if self.parked and live.pending_done is not None:
            self.ctx.resume_store.end(self, live, live.pending_done)

    def _forget(self, live: LiveStream | Follower) -> None:
        """No longer a running stream of this session (a newer stream may reuse its id)."""
        stream_id = live.account.request_id
        away = self.machine.state is not State.OPEN  # parked, or ending while parked
        if away and isinstance(live, LiveStream) and live.account.outcome not in _NOT_ENDED:
            self.ctx.resume_store.end(self, live, _ended_away(live))  # a follower tells its client
        live.release()
        if self.live.get(stream_id) is live:
            del self.live[stream_id]
            self.machine.stream_ended(stream_id)
        if not self.live:  # byte offsets only map unsent bytes to running streams
            self.writes = None

    def _replay(self, live: LiveStream | Follower, after_seq: int) -> None:
        """Replay what the client missed after `after_seq`, then continue live."""
        if isinstance(live, Follower):  # from the store, as the replica relaying it goes on
            live.resume(after_seq, self._write_now)
            return
        stream_id, account = live.account.request_id, live.account
        if live.replay is None:
            self._error(
                stream_id, "resume_unavailable", f"no resumable stream with id {stream_id!r}"
            )
            return
        after_seq = min(after_seq, account.deltas)
        texts = live.replay.texts_after(after_seq)
        if texts is None:
            self._error(stream_id, "resume_too_late", "the deltas after that seq are gone")
            live.stream.stop(Outcome.CLIENT_GONE)
            return
        frames = [
            protocol.delta(stream_id, seq, text)
            for seq, text in enumerate(texts, start=after_seq + 1)
        ]
        account.written = after_seq  # the client says it has everything up to there
        live.held = False
        done = live.pending_done
        with contextlib.suppress(ClientGone):
            self._write_now(frames + ([done] if done else []), live, len(frames))
        if done is not None:
            live.stream.end(Outcome.COMPLETED)

    # Writing -------------------------------------------------------------------------------

    def _write(
        self, frames: list[bytes], live: LiveStream | Follower | None = None, deltas: int = 0
    ) -> None:
        # Not a coroutine: it never waits, and a coroutine per relayed read is measurable.
        parked = self.machine.state is State.PARKED  # `self.parked`, without a property call
        if parked or (live is not None and live.held):
            if parked and isinstance(live, LiveStream):  # shared with other replicas
                self.ctx.resume_store.append(self, live, deltas)
            return  # kept in the stream's replay buffer for a resume
        self._write_now(frames, live, deltas)

    def _write_now(
        self, frames: list[bytes], live: LiveStream | Follower | None = None, deltas: int = 0
    ) -> None:
        self.handle.write_frames(frames)
        if live is not None:  # only deltas matter when mapping unsent bytes to streams
            live.account.on_written(deltas)
            if self.writes is None:
                self.writes = deque(maxlen=8192)
            self.writes.append((self.handle.bytes_written, live, deltas))
        if self.handle.buffered() > self.ctx.limits.max_buffered_bytes:
            self._do(self.machine.too_slow())
            raise ClientGone

    def _error(self, stream_id: str | None, code: str, message: str) -> None:
        self._send_quietly([protocol.error(stream_id, code, message)])

    def _send_quietly(self, frames: list[bytes]) -> None:
        """Write now, from code that does not await (a frame handler, a timer); a client that
        is gone is found by its own path, not here."""
        with contextlib.suppress(ClientGone):
            self._write_now(frames)


def _ended_away(live: LiveStream) -> bytes:
    """The error frame of a stream that ended while its client was away: gone (the grace
    window passed, the sidecar drained) is `resume_expired`, as a resume would be told."""
    account = live.account
    gone = account.outcome in (Outcome.CLIENT_GONE, Outcome.CLIENT_TOO_SLOW)
    code = account.error_code or ("resume_expired" if gone else str(account.outcome))
    return protocol.error(account.request_id, code, "the answer ended while its client was away")


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
