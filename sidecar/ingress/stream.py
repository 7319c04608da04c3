"""One stream on a WebSocket session: its account, relay task, upstream response, replay
buffer for resumes, and the sink that batches its deltas into one write per upstream read."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from sidecar.accounting.stream import StreamAccount
from sidecar.ingress import protocol
from sidecar.ingress.transport import ClientGone
from sidecar.telemetry.spans import NOOP_STREAM, StreamTrace
from sidecar.upstream.client import UpstreamResponse
from sidecar.upstream.sse import SSEDecoder

if TYPE_CHECKING:
    from sidecar.ingress.websocket import WebSocketSession


class LiveStream:
    """A running stream: its account, its relay task and its upstream response."""

    __slots__ = (
        "account",
        "decoder",
        "held",
        "pending_done",
        "replay",
        "response",
        "t_gone",
        "task",
        "trace",
    )

    def __init__(self, account: StreamAccount, replay: int) -> None:
        self.account = account
        # With a resume grace window: recent delta frames by seq, to replay after a reconnect.
        self.replay: deque[tuple[int, bytes]] | None = deque(maxlen=replay) if replay else None
        self.held = False  # parked or reconnected but not yet resumed: keep frames, send none
        self.pending_done: bytes | None = None  # finished upstream while its client was away
        self.trace: StreamTrace = NOOP_STREAM
        self.decoder = SSEDecoder()
        self.task: asyncio.Task[None] | None = None
        self.response: UpstreamResponse | None = None
        self.t_gone: float | None = None

    def release(self) -> None:
        """Drop references once the relay task is done: the task's frame refers back to this
        object, and such cycles wait for a full garbage collection, which pauses the loop."""
        self.task = None
        self.response = None
        self.replay = None


class WebSocketSink:
    """Collects the deltas of one upstream read and writes them as one batch.

    A `start` frame given as `head` and the `done` frame go out in the same write as the
    deltas next to them: one send per upstream read is the main cost per token (DESIGN §10).
    """

    __slots__ = ("account", "deltas", "done_sent", "frames", "live", "request_id", "session")

    def __init__(self, session: WebSocketSession, live: LiveStream, head: bytes | None) -> None:
        self.session = session
        self.live = live
        account = self.account = live.account
        self.request_id = account.request_id
        self.frames: list[bytes] = [head] if head is not None else []
        self.deltas = 0
        self.done_sent = False

    def delta(self, seq: int, text: str) -> None:
        frame = protocol.delta(self.request_id, seq, text)
        self.frames.append(frame)
        self.deltas += 1
        if self.live.replay is not None:
            self.live.replay.append((seq, frame))

    def passthrough(self, payload: str, usage_only: bool) -> None:
        pass

    async def flush(self, finished: bool = False) -> None:
        # Not while the client is away: the relay keeps `done` for the resume.
        with_done = finished and not (self.done_sent or self.live.held or self.session.parked)
        if with_done:
            self.frames.append(done_frame(self.account))
        elif not self.frames:
            return
        frames, deltas = self.frames, self.deltas
        self.frames, self.deltas = [], 0
        try:
            await self.session._write(frames, self.live, deltas)
        except ClientGone:
            if self.live.replay is None:
                raise
            self.live.held = True  # the connection died; a resume will replay these
            return
        if with_done:
            self.done_sent = True
            self.session.answered(self.live)


def done_frame(account: StreamAccount) -> bytes:
    return protocol.done(
        account.request_id, account.finish_reason, account.prompt_tokens, account.generated_tokens
    )
