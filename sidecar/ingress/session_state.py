"""The protocol-v1 session as a sans-I/O state machine, in the style of `websockets`' Protocol
and h11: inputs in (a frame, a lost connection, a tick, a stream's end, the server's drain or a
revoked key), actions out, no sockets, tasks or clocks of its own.

    OPEN ──connection lost, streams running, grace window──▶ PARKED ──resume──▶ OPEN
      │                                                        │
      └──lost / closed by the sidecar──▶ CLOSED ◀──window over, drain, revoke──┘

The asyncio shell (sidecar.ingress.websocket) feeds it and carries out what it returns: writing
frames, starting and stopping streams (sidecar.relay.lifecycle), closing the connection.
Per-token work never passes through here: deltas go from the relay to the transport directly.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from sidecar.accounting.stream import Outcome
from sidecar.ingress import protocol
from sidecar.ingress.protocol import Ack, Cancel, Generate, Ping, Pong, ProtocolError, Resume
from sidecar.security.limits import IdleTimer

REVOKED = "revoked_api_key"  # the code the gate refuses a revoked key with, too
EXPIRED = "expired_token"  # likewise for a token past its `exp`
# Ways to lose a client that a resume can undo (the others are the sidecar's decision).
RESUMABLE = frozenset({"client_closed", "heartbeat_timeout", "send_timeout"})
DRAIN_CLOSE_REASON = "server draining; retry_after_ms=1000"
RECENT_IDS = 64  # ended stream ids remembered, to answer a late `cancel` with already_finished


class State(enum.Enum):
    OPEN = "open"  # connected: frames in, frames out
    PARKED = "parked"  # connection lost; streams run on, their output kept for a resume
    CLOSED = "closed"  # over for good; the session row is final


# Actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write these frames to the client (they are not any stream's deltas)."""

    frames: list[bytes]


@dataclass(frozen=True, slots=True)
class StartStream:
    event: Generate


@dataclass(frozen=True, slots=True)
class StopStream:
    id: str
    outcome: Outcome
    error_code: str | None = None
    unsent: int = 0  # its deltas that sat in bytes the client never received
    confirm: bool = False  # tell the client: `done` with finish_reason "cancelled"


@dataclass(frozen=True, slots=True)
class AckStream:
    id: str
    seq: int


@dataclass(frozen=True, slots=True)
class ReplayStream:
    """Replay a stream's deltas after `after_seq` to the new connection, then go on live."""

    id: str
    after_seq: int


@dataclass(frozen=True, slots=True)
class KeepParked:
    """A replica serving this session's client spoke for it: the grace window starts again."""


@dataclass(frozen=True, slots=True)
class RemoteDelivered:
    """A replica serving the client delivered this stream up to `seq` (`final`: and its
    `done`): its count of deltas written is that replica's."""

    id: str
    seq: int
    final: bool


@dataclass(frozen=True, slots=True)
class Close:
    """Say goodbye with a close frame."""

    code: int
    why: str


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop the connection without a handshake (the peer is dead or stopped reading), then
    report it lost for `reason` with what never left its buffers (`connection_lost`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The connection is over (count it); `parked`: its streams wait for a resume, and what
    sat unsent in the dead connection no longer counts as written."""

    reason: str
    parked: bool
    unsent: dict[str, int]


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """Final: write the session row, end its span, forget its resume token."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A stream or frame refused by a limit: count it (`sidecar_limit_hits_total` or an auth
    failure for an expired token)."""

    limit: str


Action = (
    Send
    | StartStream
    | StopStream
    | AckStream
    | ReplayStream
    | KeepParked
    | RemoteDelivered
    | Close
    | Abort
    | ConnectionEnded
    | SessionEnded
    | Refused
)


@dataclass(slots=True)
class SessionRules:
    max_streams: int = 16
    send_timeout: float = 10.0  # a send buffer that does not drain this long: the peer is dead
    app_ping_interval: float = 0.0  # > 0: send protocol-v1 ping frames
    resume_grace: float = 0.0  # > 0: a lost client's streams wait this long for a resume


class SessionMachine:
    """One session's control state. Every method returns the actions to carry out, in order."""

    __slots__ = (
        "expires_at",
        "idle",
        "last_acked",
        "last_app_ping",
        "reason",
        "recent",
        "rules",
        "running",
        "stalled_since",
        "state",
    )

    def __init__(
        self, rules: SessionRules, idle: IdleTimer | None = None, expires_at: float | None = None
    ) -> None:
        self.rules = rules
        self.state = State.OPEN
        self.running: set[str] = set()  # ids of streams not yet ended
        self.recent: deque[str] = deque(maxlen=RECENT_IDS)  # ids of streams that just ended
        self.idle = idle
        self.expires_at = expires_at  # wall clock; its token's `exp`, if a token admitted it
        self.reason: str | None = None  # why the connection ended
        self.stalled_since: float | None = None
        self.last_acked = -1
        self.last_app_ping = 0.0

    # Client frames ---------------------------------------------------------------------------

    def frame(self, data: str | bytes, now: float, wall: float, draining: bool) -> list[Action]:
        if self.state is not State.OPEN:
            return []
        if self.idle is not None:
            self.idle.touch(now)
        event = protocol.parse_client_frame(data)
        match event:
            case Generate():
                return self._generate(event, wall, draining)
            case Cancel(stream_id):
                if stream_id in self.running:
                    return [StopStream(stream_id, Outcome.CLIENT_CANCELLED, confirm=True)]
                if stream_id in self.recent:  # its `done` crossed the cancel on the wire
                    return [_error(stream_id, "already_finished", "that stream already finished")]
                return [_error(stream_id, "unknown_id", f"no running stream with id {stream_id!r}")]
            case Ack(stream_id, seq):
                return [AckStream(stream_id, seq)] if stream_id in self.running else []
            case Resume(stream_id, after_seq):
                if stream_id not in self.running:
                    return [
                        _error(
                            stream_id, "unknown_id", f"no resumable stream with id {stream_id!r}"
                        )
                    ]
                if not self.rules.resume_grace:
                    return [
                        _error(
                            stream_id,
                            "resume_unavailable",
                            f"no resumable stream with id {stream_id!r}",
                        )
                    ]
                return [ReplayStream(stream_id, after_seq)]
            case Ping(t):
                return [Send([protocol.pong(t)])]
            case Pong():
                return []
            case ProtocolError(code, message, stream_id):
                return [_error(stream_id, code, message)]

    def _generate(self, event: Generate, wall: float, draining: bool) -> list[Action]:
        if draining:
            return [
                _error(event.id, "draining", "this sidecar is shutting down; reconnect elsewhere")
            ]
        if event.id in self.running:
            return [_error(event.id, "duplicate_id", f"stream {event.id!r} is already running")]
        if self.token_expired(wall):
            return [
                Refused(EXPIRED),
                _error(event.id, EXPIRED, "this connection's token has expired; reconnect"),
            ]
        if len(self.running) >= self.rules.max_streams:
            return [
                Refused("streams_per_connection"),
                _error(
                    event.id, "too_many_streams", "too many concurrent streams on this connection"
                ),
            ]
        self.running.add(event.id)
        return [StartStream(event)]

    def stream_ended(self, stream_id: str) -> None:
        """A stream ended, or was refused at admission: its id is free again."""
        if stream_id in self.running:
            self.running.discard(stream_id)
            self.recent.append(stream_id)

    def token_expired(self, wall: float) -> bool:
        return self.expires_at is not None and wall >= self.expires_at

    # The connection ----------------------------------------------------------------------------

    def connection_lost(self, reason: str, unsent: dict[str, int] | None = None) -> list[Action]:
        """The connection is gone (`reason`: the disconnect reason recorded); `unsent`: deltas
        per stream that sat in bytes the client never received."""
        if self.state is not State.OPEN:
            return []
        self.reason = reason
        unsent = unsent or {}
        if self.rules.resume_grace > 0 and self.running and reason in RESUMABLE:
            self.state = State.PARKED
            return [ConnectionEnded(reason, True, unsent)]
        return [ConnectionEnded(reason, False, unsent), *self._finish(reason, unsent)]

    def _finish(self, reason: str, unsent: dict[str, int]) -> list[Action]:
        self.state = State.CLOSED
        outcome = Outcome.CLIENT_TOO_SLOW if reason == "client_too_slow" else Outcome.CLIENT_GONE
        stops: list[Action] = [
            StopStream(sid, outcome, unsent=unsent.get(sid, 0)) for sid in sorted(self.running)
        ]
        return [*stops, SessionEnded(reason)]

    def _close(self, code: int, why: str, reason: str) -> list[Action]:
        """The sidecar ends the connection politely (close frame) for `reason`."""
        return [*self.connection_lost(reason), Close(code, why)]

    def too_slow(self) -> list[Action]:
        """Its send buffer passed the bound: the client stopped reading; its buffer is shared
        by all its streams, so the connection goes and every stream ends client_too_slow."""
        return [Abort("client_too_slow")] if self.state is State.OPEN else []

    def heartbeat_missed(self, unsent: dict[str, int] | None = None) -> list[Action]:
        return self.connection_lost("heartbeat_timeout", unsent)

    def tick(self, now: float, wall: float, unacked: int, acked: int) -> list[Action]:
        """Once a second: app-level pings, the idle timeout, an expired token, and a send buffer
        that stops draining (a dead or stuck peer: pings queue behind the data and never fire)."""
        if self.state is not State.OPEN:
            return []
        actions: list[Action] = []
        interval = self.rules.app_ping_interval
        if interval and now - self.last_app_ping >= interval:
            # For clients that cannot see protocol pings (browsers) but want to notice a dead
            # sidecar or path: they answer {"type":"pong","t":...} and track it themselves.
            self.last_app_ping = now
            actions.append(Send([protocol.ping(round(wall * 1000))]))
        if self.idle is not None and self.idle.expired(now, busy=bool(self.running)):
            return [*actions, Refused("idle_timeout"), *self._close(1000, "idle", "idle_timeout")]
        if not self.running and self.token_expired(wall):
            # Streams running at the expiry were let finish; new ones were refused.
            return [*actions, *self._close(1008, "token expired", "token_expired")]
        if unacked == 0 or acked != self.last_acked:
            self.stalled_since = None
        elif self.stalled_since is None:
            self.stalled_since = now
        elif now - self.stalled_since >= self.rules.send_timeout:
            return [*actions, Abort("send_timeout")]
        self.last_acked = acked
        return actions

    # The server's decisions --------------------------------------------------------------------

    def drain(self) -> list[Action]:
        """Server drain: what still runs ends as `shutdown`, then a close frame."""
        if self.state is State.PARKED:
            return self.expire("server_drain")
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        for sid in sorted(self.running):
            actions.append(_error(sid, "shutdown", "the sidecar is shutting down"))
            actions.append(StopStream(sid, Outcome.SHUTDOWN))
        # 1012 (service restart): reconnect, after a randomized delay, to another replica.
        return [*actions, *self._close(1012, DRAIN_CLOSE_REASON, "server_drain")]

    def revoke(self) -> list[Action]:
        """Its API key was revoked: streams end as `rejected`, the client is told, close 1008.
        A parked session just ends: reconnecting with a revoked key is refused at the gate."""
        if self.state is State.PARKED:
            return self.expire("key_revoked")
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        for sid in sorted(self.running):
            actions.append(_error(sid, REVOKED, "this connection's API key was revoked"))
            actions.append(StopStream(sid, Outcome.REJECTED, REVOKED))
        return [*actions, *self._close(1008, "key revoked", "key_revoked")]

    def expire(self, reason: str) -> list[Action]:
        """The grace window passed without a resume (or the server drains): end for good."""
        if self.state is not State.PARKED:
            return []
        return self._finish(reason, {})

    def adopt(self, stream_ids: list[str]) -> None:
        """Streams another replica relays for this session, followed here: the client may
        resume, ack and cancel them."""
        self.running.update(stream_ids)

    def remote_control(self, op: str, stream_id: str, seq: int) -> list[Action]:
        """While parked here, a replica serving the client elsewhere (a shared resume store)
        reports on one of this session's streams (sidecar.resume.records.Control)."""
        if self.state is not State.PARKED:
            return []
        actions: list[Action] = [KeepParked()]
        if stream_id not in self.running:
            return actions
        match op:
            case "ack":
                actions.append(AckStream(stream_id, seq))
            case "delivered" | "detach":
                actions.append(RemoteDelivered(stream_id, seq, final=False))
            case "done":
                actions.append(RemoteDelivered(stream_id, seq, final=True))
            case "cancel" | "gone":  # `seq`: what it delivered before
                outcome = Outcome.CLIENT_CANCELLED if op == "cancel" else Outcome.CLIENT_GONE
                actions.append(RemoteDelivered(stream_id, seq, final=False))
                actions.append(StopStream(stream_id, outcome))
        return actions

    def attach(self, expires_at: float | None) -> list[Action]:
        """A reconnect with this session's resume token: a new connection, and the credential
        that admitted it, take over; its streams wait for `resume` frames."""
        if self.state is not State.PARKED:
            return []
        self.state = State.OPEN
        self.expires_at = expires_at
        self.reason = None
        self.stalled_since, self.last_acked = None, -1
        return []


def _error(stream_id: str | None, code: str, message: str) -> Send:
    return Send([protocol.error(stream_id, code, message)])
