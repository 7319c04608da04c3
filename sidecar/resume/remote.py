"""A stream another replica relays from its upstream, followed here for a client that resumed
on this replica (a shared resume store).

To the WebSocket session it looks like a `LiveStream` (an account with the request id and
counts, `stop()`), so the session carries out the same actions for it; the owner keeps the
upstream, the ledger row and the accounting, and learns from control messages what was
delivered here, what the client acknowledged, and whether it cancelled or left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.accounting.stream import Outcome
from sidecar.ingress import protocol
from sidecar.relay.pump import ClientGone
from sidecar.resume.records import Control, ControlOp, Cursor
from sidecar.resume.store import StoreUnavailable

if TYPE_CHECKING:
    from sidecar.ingress.replay import ReplayBuffer

log = logging.getLogger("sidecar.resume")

ALIVE_EVERY = 1.0  # seconds between `delivered` reports, which also say this replica is alive
READ_BLOCK_MS = 1000


class Link(Protocol):
    """What a follower needs of the store (sidecar.resume.redis_store.RedisStore)."""

    async def read(
        self, tkey: str, stream_id: str, after: bytes
    ) -> list[tuple[bytes, dict[bytes, bytes]]]: ...

    def control(self, owner: str, message: Control) -> None: ...

    async def owner_alive(self, owner: str) -> bool: ...


Write = Callable[[list[bytes], Any, int], None]  # (frames, the stream, deltas in them)


class FollowedAccount:
    """The few counts the session keeps for a followed stream (the owner keeps the rest)."""

    __slots__ = ("acked", "request_id", "written")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.written = 0  # the highest seq written to the client here
        self.acked: int | None = None

    def on_written(self, count: int = 1) -> None:
        self.written += count

    def on_ack(self, seq: int) -> None:
        self.acked = seq


class Follower:
    __slots__ = (
        "account",
        "held",
        "link",
        "on_end",
        "owner",
        "pending_done",
        "replay",
        "task",
        "tkey",
    )

    def __init__(self, link: Link, tkey: str, stream_id: str, owner: str) -> None:
        self.link, self.tkey, self.owner = link, tkey, owner
        self.account = FollowedAccount(stream_id)
        self.held = True  # nothing is sent before the client says `resume`
        self.replay: ReplayBuffer | None = None
        self.pending_done: bytes | None = None
        self.task: asyncio.Task[None] | None = None
        self.on_end: Callable[[Follower], None] | None = None

    @property
    def stream(self) -> Follower:
        """The session stops a stream through `live.stream.stop(...)`."""
        return self

    def release(self) -> None:
        return None

    def resume(self, after_seq: int, write: Write) -> None:
        if self.task is None:
            self.held = False
            self.account.written = after_seq
            self._send("attach", after_seq)
            self.task = asyncio.get_running_loop().create_task(self._follow(after_seq, write))

    def ack(self, seq: int) -> None:
        self._send("ack", seq)

    def stop(
        self, outcome: Outcome, *, error_code: str | None = None, unsent: int = 0, **_: Any
    ) -> bool:
        """The client cancelled here, or is gone for good: tell the owner, which ends it."""
        self._send("cancel" if outcome is Outcome.CLIENT_CANCELLED else "gone")
        self._finish()
        return True

    def detach(self, unsent: int) -> None:
        """The client's connection here was lost; it may resume again, here or elsewhere."""
        self._send("detach", self.account.written - unsent)
        self._finish()

    def _send(self, op: ControlOp, seq: int | None = None) -> None:
        seq = self.account.written if seq is None else seq
        self.link.control(self.owner, Control(op, self.tkey, self.account.request_id, seq))

    def _finish(self) -> None:
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end(self)

    async def _follow(self, after_seq: int, write: Write) -> None:
        stream_id = self.account.request_id
        cursor = Cursor(stream_id, after_seq)
        after, reported = b"0-0", time.monotonic()
        try:
            while not cursor.ended:
                entries = await self.link.read(self.tkey, stream_id, after)
                for entry_id, fields in entries:
                    after = entry_id
                    frames = cursor.feed(fields)
                    deltas = len(frames) - cursor.ended
                    if frames:
                        write(frames, self, deltas)
                if cursor.too_late:
                    write([_error(stream_id, "resume_too_late")], None, 0)
                    self._send("gone")
                    break
                if not entries and not await self.link.owner_alive(self.owner):
                    write([_error(stream_id, "resume_expired")], None, 0)
                    break
                if time.monotonic() - reported >= ALIVE_EVERY:
                    reported = time.monotonic()
                    self._send("delivered")
            else:
                self._send("done")
        except ClientGone:
            return  # the session sees the connection's end and detaches
        except StoreUnavailable as exc:
            # The store went away: the answer cannot go on here; its owner ends it after the
            # grace window (client_gone), as if the client had not come back.
            log.warning("resume store lost while following %s: %s", stream_id, exc)
            with contextlib.suppress(ClientGone):
                write([_error(stream_id, "resume_expired")], None, 0)
        self._finish()


def _error(stream_id: str, code: str) -> bytes:
    message = {
        "resume_too_late": "the deltas after that seq are gone",
        "resume_expired": "the replica relaying this answer is gone; ask again",
    }[code]
    return protocol.error(stream_id, code, message)
