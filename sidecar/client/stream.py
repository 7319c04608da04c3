"""One answer being generated: an async iterator of deltas, each handed out once and in seq
order, and `result()` for its end.

Three positions per stream: `received_seq` (highest seq taken off the wire; a resume continues
after it), `rendered_seq` (highest seq the application has shown; what acks report) and
`acked_seq` (what the last ack sent said).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Literal, Protocol

from sidecar.client.errors import ClientError, Code

AckMode = Literal["iteration", "manual"]


@dataclass(frozen=True, slots=True)
class Delta:
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Result:
    finish_reason: str | None  # "stop", "length", ... or "cancelled" after `cancel()`
    usage: Usage | None  # None after `cancel()`


class State(Enum):
    QUEUED = "queued"  # the generate frame has not gone out yet
    SENT = "sent"
    ENDED = "ended"


class Owner(Protocol):
    def on_rendered(self, stream: Stream) -> None: ...
    def on_cancel(self, stream: Stream) -> None: ...


class Stream:
    def __init__(
        self, stream_id: str, body: dict[str, Any], path: str | None, ack: AckMode, owner: Owner
    ) -> None:
        self.id = stream_id
        self.body = body
        self.path = path
        self.ack = ack
        self._owner = owner
        self.state = State.QUEUED
        self.trace_id: str | None = None
        self.received_seq = 0
        self.rendered_seq = 0
        self.acked_seq = 0
        self._buffer: deque[Delta] = deque()
        self._changed = asyncio.Event()
        self._result: Result | None = None
        self._error: ClientError | None = None

    @property
    def ended(self) -> bool:
        return self.state is State.ENDED

    # Called by the client ------------------------------------------------------------------

    def push(self, seq: int, text: str) -> ClientError | None:
        """A delta frame. A seq already received is dropped (a replay); a gap is an error."""
        if self.ended or seq <= self.received_seq:
            return None
        if seq != self.received_seq + 1:
            message = f"stream {self.id}: got seq {seq} after {self.received_seq}"
            return ClientError(Code.SEQUENCE_GAP, message, self.id)
        self.received_seq = seq
        self._buffer.append(Delta(seq, text))
        self._changed.set()
        return None

    def finish(self, result: Result) -> None:
        if self.ended:
            return
        self.state = State.ENDED
        self._result = result
        self._changed.set()

    def fail(self, error: ClientError) -> None:
        if self.ended:
            return
        self.state = State.ENDED
        self._error = error  # raised by the iterator after the deltas received before it
        self._changed.set()

    def _mark_rendered(self, seq: int) -> None:
        up_to = min(seq, self.received_seq)
        if up_to > self.rendered_seq:
            self.rendered_seq = up_to
            self._owner.on_rendered(self)

    # Public API ----------------------------------------------------------------------------

    def rendered(self, seq: int) -> None:
        """Every delta up to `seq` is on screen (with `ack="manual"`); the next acks say so."""
        self._mark_rendered(seq)

    def cancel(self) -> None:
        """Stop the answer (the sidecar aborts the model server's generation). Local and final:
        iteration ends at once and `result()` returns finish_reason "cancelled"."""
        if self.ended:
            return
        self._owner.on_cancel(self)
        self._buffer.clear()
        self.finish(Result("cancelled", None))

    async def result(self) -> Result:
        """Wait for the end; raises `ClientError` if the answer failed."""
        while not self.ended:
            self._changed.clear()
            await self._changed.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Delta:
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self.ended:
                raise StopAsyncIteration
            self._changed.clear()
            await self._changed.wait()
        delta = self._buffer.popleft()
        if self.ack == "iteration":
            self._mark_rendered(delta.seq)
        return delta

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Leaving the block before the end cancels the answer."""
        self.cancel()
