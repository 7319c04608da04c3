"""One stream on a WebSocket session: its `Stream` (sidecar.relay.lifecycle), the replay buffer
for resumes, and the sink that batches its deltas into one write per upstream read."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import orjson

from sidecar.accounting.stream import StreamAccount
from sidecar.ingress import protocol
from sidecar.ingress.replay import ReplayBuffer
from sidecar.relay.lifecycle import Stream
from sidecar.relay.pump import ClientGone

if TYPE_CHECKING:
    from sidecar.resume.remote import FollowedAccount


# How long `start` waits for the first token to share its write (`WebSocketSink.opened`):
# below what a person notices, and about a fast model server's time to first token.
START_ALONE_AFTER = 0.05


class LiveStream:
    """A running stream of a session and what the session keeps for its resume."""

    __slots__ = ("account", "held", "pending_done", "replay", "stream")

    def __init__(self, stream: Stream, replay: ReplayBuffer | None) -> None:
        self.stream = stream
        self.account = stream.account
        # With a resume grace window: its recent deltas, to replay after a reconnect.
        self.replay = replay
        self.held = False  # parked or reconnected but not yet resumed: keep frames, send none
        self.pending_done: bytes | None = None  # finished upstream while its client was away

    def release(self) -> None:
        """Ended or answered: the replay buffer is no longer needed."""
        if self.replay is not None:
            self.replay.release()
            self.replay = None


class Writer(Protocol):
    """What a sink needs of its session (sidecar.ingress.websocket.WebSocketSession)."""

    @property
    def parked(self) -> bool: ...

    def _write(self, frames: list[bytes], live: LiveStream | None = None, deltas: int = 0) -> None:
        """Write now (raises `ClientGone`), or keep for a resume while the client is away."""

    def _error(self, stream_id: str | None, code: str, message: str) -> None: ...

    def _send_quietly(self, frames: list[bytes]) -> None: ...

    def answered(self, live: LiveStream) -> None: ...

    def kept_done(self, live: LiveStream) -> None: ...


class WebSocketSink:
    """The WebSocket side of a stream: collects the deltas of one upstream read and writes them
    as one batch.

    A `start` frame and the `done` frame go out in the same write as the deltas next to them
    when they can: one send per upstream read is the main cost per token (DESIGN §10).
    """

    __slots__ = (
        "account",
        "deltas",
        "done_sent",
        "frames",
        "live",
        "request_id",
        "session",
        "start_timer",
    )

    def __init__(self, session: Writer, live: LiveStream) -> None:
        self.session = session
        self.live = live
        account = self.account = live.account
        self.request_id = account.request_id
        self.frames: list[bytes] = []
        self.deltas = 0
        self.done_sent = False
        self.start_timer: asyncio.TimerHandle | None = None

    async def opened(self, body_ready: bool) -> None:
        self.frames.append(protocol.start(self.request_id, self.account.trace_id or ""))
        if not body_ready:
            # The model server accepted and is still thinking. Its first token often follows
            # within milliseconds: `start` then shares its write (a send per stream less, about
            # a twentieth of a short answer's CPU); otherwise the client hears of it alone.
            loop = asyncio.get_running_loop()
            self.start_timer = loop.call_later(START_ALONE_AFTER, self._start_alone)

    def _start_alone(self) -> None:
        self.start_timer = None
        if self.frames and not (self.account.ended or self.live.held or self.session.parked):
            frames, self.frames = self.frames, []
            self.session._send_quietly(frames)

    def _keep_start(self) -> None:
        if self.start_timer is not None:
            self.start_timer.cancel()
            self.start_timer = None

    def delta(self, seq: int, text: str) -> None:
        frame = protocol.delta(self.request_id, seq, text)
        self.frames.append(frame)
        self.deltas += 1
        if self.live.replay is not None:
            self.live.replay.append(seq, text)

    def passthrough(self, payload: str, usage_only: bool) -> None:
        pass

    async def flush(self, finished: bool = False) -> None:
        # Not while the client is away: the relay keeps `done` for the resume.
        with_done = finished and not (self.done_sent or self.live.held or self.session.parked)
        if with_done:
            self.live.stream.completing()
            self.frames.append(done_frame(self.account))
        elif not self.frames:
            return
        if self.start_timer is not None:  # `start` goes with these
            self._keep_start()
        frames, deltas = self.frames, self.deltas
        self.frames, self.deltas = [], 0
        try:
            self.session._write(frames, self.live, deltas)
        except ClientGone:
            if self.live.replay is None:
                raise
            self.live.held = True  # the connection died; a resume will replay these
            return
        if with_done:
            self.done_sent = True
            self.session.answered(self.live)

    async def completed(self) -> bool:
        if self.done_sent:
            return True
        done = done_frame(self.account)
        if self.live.held or self.session.parked:
            self.live.pending_done = done  # the client is away: deliver the end on resume
            self.session.kept_done(self.live)
            return False
        self.live.stream.completing()
        frames, self.frames = self.frames, []  # `start`, if still waiting (an empty answer)
        frames.append(done)
        self._keep_start()
        self.session._write(frames)
        return True

    async def failed(
        self, code: str, message: str, status: int, retry_after: float | None = None
    ) -> None:
        if self.frames:  # deltas read with the failure (in the same upstream read) go first
            await self.flush()
        retry_ms = None if retry_after is None else round(retry_after * 1000)
        self.session._send_quietly([protocol.error(self.request_id, code, message, retry_ms)])


def cancelled_frame(account: StreamAccount | FollowedAccount) -> bytes:
    """The terminal frame confirming a cancel. A stream relayed by another replica (followed
    through the resume store) has its counts there: its usage is null here."""
    if isinstance(account, StreamAccount):
        return done_frame(account, "cancelled")
    return orjson.dumps(
        {"type": "done", "id": account.request_id, "finish_reason": "cancelled", "usage": None}
    )


def done_frame(account: StreamAccount, finish_reason: str | None = None) -> bytes:
    return protocol.done(
        account.request_id,
        finish_reason or account.finish_reason,
        account.prompt_tokens,
        account.generated_tokens,
    )
