"""Where resumable streams are shared: the interface the WebSocket session calls, and the
in-process store (one replica; what `serve` does without `--resume-store`).

The session always keeps its own parked sessions in `ServerContext.parked` and each stream's
deltas in its `ReplayBuffer`; a shared store (sidecar.resume.redis_store) also publishes them
while a session is parked, so that a client reconnecting to another replica can resume there.
Nothing is published while the client is connected: the relay's hot path pays nothing then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sidecar.ingress.stream import LiveStream
    from sidecar.resume.records import ParkedSession
    from sidecar.resume.remote import Follower


class StoreUnavailable(Exception):
    """The shared store cannot be reached (a follower's read failed)."""


class Parkable(Protocol):
    """What a store needs of a parked session (sidecar.ingress.websocket.WebSocketSession)."""

    token: str
    tenant: str
    live: dict[str, LiveStream | Follower]

    @property
    def session_id(self) -> str: ...

    def remote_control(self, op: str, stream_id: str, seq: int) -> None: ...


class ResumeStore(Protocol):
    node: str  # this process, as owners are named in the store

    async def start(self) -> None:
        """Connect; raises ConfigError (one line) when the store cannot be reached."""

    async def close(self) -> None: ...

    def park(self, session: Parkable) -> None:
        """The session parked: publish its running streams and what they kept."""

    def append(self, session: Parkable, live: LiveStream, deltas: int) -> None:
        """A parked stream relayed `deltas` more (one flush): publish them, without waiting."""

    def end(self, session: Parkable, live: LiveStream, frame: bytes) -> None:
        """A stream's last frame (done or error) while its session is away: publish it if the
        session is, without waiting."""

    def unpark(self, session: Parkable) -> None:
        """The session re-attached here or ended: stop sharing it."""

    async def claim(self, token: str, tenant: str, wait: bool = True) -> ParkedSession | None:
        """A session parked on another replica under this token, for this tenant (`wait`: a
        moment for one that is being parked right now)."""

    def follow(self, token: str, stream_id: str, owner: str) -> Follower:
        """Follow a stream another replica owns, for a client connected here."""


class LocalStore:
    """One replica: the parked sessions and replay buffers in this process are all there is."""

    node = "local"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def park(self, session: Parkable) -> None:
        return None

    def append(self, session: Parkable, live: LiveStream, deltas: int) -> None:
        return None

    def end(self, session: Parkable, live: LiveStream, frame: bytes) -> None:
        return None

    def unpark(self, session: Parkable) -> None:
        return None

    async def claim(self, token: str, tenant: str, wait: bool = True) -> ParkedSession | None:
        return None

    def follow(self, token: str, stream_id: str, owner: str) -> Follower:
        raise AssertionError("the local store has no other replica to follow")
