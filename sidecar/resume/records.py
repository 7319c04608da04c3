"""What replicas share about resumable streams in a resume store, as plain values (no I/O).

Per parked session, keyed by a digest of its resume token (the token itself never leaves the
process that issued it, so reading the store does not let anyone resume):

- a *session* hash: its protocol session id, its tenant, and for each stream still running
  the node that owns its upstream (`o:<id>`);
- one *delta log* per stream (a Redis Stream): batches of deltas as the owner relayed them
  (`s` first seq, `t` texts), and an end entry (`end`: the stream's last frame);
- one *control* log per node: what replicas serving the client tell the owner (`ControlOp`);
- one *alive* key per node, refreshed every second: a follower whose owner died stops waiting.

`Cursor` turns a delta log back into frames for a client: every delta after its `after_seq`
exactly once, in order, whatever batches repeat or overlap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import orjson

from sidecar.ingress import protocol

PREFIX = "sidecar:resume"
# attach: a client resumed the stream there; delivered: it has the deltas up to `seq` (sent
# about once a second, also to say that replica is alive); done: and the `done` frame;
# ack: it acknowledged up to `seq`; cancel: it cancelled; gone: it is gone for good;
# detach: its connection there was lost (it may resume again within the grace window).
ControlOp = Literal["attach", "delivered", "done", "ack", "cancel", "gone", "detach"]
CONTROL_OPS: frozenset[str] = frozenset(
    {"attach", "delivered", "done", "ack", "cancel", "gone", "detach"}
)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def session_key(tkey: str) -> str:
    return f"{PREFIX}:s:{tkey}"


def log_key(tkey: str, stream_id: str) -> str:
    return f"{PREFIX}:d:{tkey}:{stream_id}"


def control_key(node: str) -> str:
    return f"{PREFIX}:c:{node}"


def alive_key(node: str) -> str:
    return f"{PREFIX}:n:{node}"


def owner_field(stream_id: str) -> str:
    return f"o:{stream_id}"


@dataclass(frozen=True, slots=True)
class ParkedSession:
    """A session parked on some replica, as another replica finds it."""

    session_id: str
    tenant: str
    owners: dict[str, str]  # stream id -> node that owns its upstream

    @staticmethod
    def parse(fields: dict[bytes, bytes]) -> ParkedSession | None:
        session, tenant = fields.get(b"session"), fields.get(b"tenant")
        if session is None or tenant is None:
            return None
        owners = {
            key[2:].decode(): value.decode()
            for key, value in fields.items()
            if key.startswith(b"o:")
        }
        return ParkedSession(session.decode(), tenant.decode(), owners)


def delta_entry(first_seq: int, texts: list[str]) -> dict[str, bytes]:
    return {"s": str(first_seq).encode(), "t": orjson.dumps(texts)}


def end_entry(frame: bytes) -> dict[str, bytes]:
    return {"end": frame}


@dataclass(slots=True)
class _Batch:
    first: int
    texts: list[str]


class LogBatches:
    """Deltas and ends waiting to be published, per log. The flushes of a stream that follow
    each other become one entry: a parked stream costs one `XADD` per publication, not one per
    upstream read."""

    __slots__ = ("logs",)

    def __init__(self) -> None:
        self.logs: dict[str, list[_Batch | bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self.logs)

    def add(self, key: str, first_seq: int, texts: list[str]) -> None:
        entries = self.logs.setdefault(key, [])
        last = entries[-1] if entries else None
        if isinstance(last, _Batch) and last.first + len(last.texts) == first_seq:
            last.texts.extend(texts)
        else:
            entries.append(_Batch(first_seq, list(texts)))

    def end(self, key: str, frame: bytes) -> None:
        self.logs.setdefault(key, []).append(frame)

    def take(self) -> dict[str, list[dict[str, bytes]]]:
        logs, self.logs = self.logs, {}
        return {
            key: [
                end_entry(entry)
                if isinstance(entry, bytes)
                else delta_entry(entry.first, entry.texts)
                for entry in entries
            ]
            for key, entries in logs.items()
        }


@dataclass(frozen=True, slots=True)
class Control:
    op: ControlOp
    tkey: str
    stream_id: str = ""
    seq: int = 0

    def fields(self) -> dict[str, bytes]:
        return {
            "op": self.op.encode(),
            "k": self.tkey.encode(),
            "id": self.stream_id.encode(),
            "seq": str(self.seq).encode(),
        }

    @staticmethod
    def parse(fields: dict[bytes, bytes]) -> Control | None:
        op = fields.get(b"op", b"").decode()
        try:
            seq = int(fields.get(b"seq", b"0"))
        except ValueError:
            return None
        if op not in CONTROL_OPS:
            return None
        return Control(
            op,  # type: ignore[arg-type]
            fields.get(b"k", b"").decode(),
            fields.get(b"id", b"").decode(),
            seq,
        )


class Cursor:
    """Where a client is in a stream's delta log: feed it entries, get the frames to send."""

    __slots__ = ("ended", "next_seq", "stream_id", "too_late")

    def __init__(self, stream_id: str, after_seq: int) -> None:
        self.stream_id = stream_id
        self.next_seq = after_seq + 1
        self.ended = False
        self.too_late = False  # the log no longer reaches back to `next_seq`

    def feed(self, fields: dict[bytes, bytes]) -> list[bytes]:
        if self.ended or self.too_late:
            return []
        end = fields.get(b"end")
        if end is not None:
            self.ended = True
            return [end]
        try:
            first = int(fields[b"s"])
            texts = orjson.loads(fields[b"t"])
        except (KeyError, ValueError, orjson.JSONDecodeError):
            return []
        if first > self.next_seq:
            self.too_late = True
            return []
        frames = []
        for seq, text in enumerate(texts, start=first):
            if seq == self.next_seq and isinstance(text, str):
                frames.append(protocol.delta(self.stream_id, seq, text))
                self.next_seq += 1
        return frames

    @property
    def delivered(self) -> int:
        """The highest seq sent so far (or the resume's `after_seq`)."""
        return self.next_seq - 1
