"""`serve --resume-store redis://HOST:PORT/DB`: replicas behind one load balancer share their
parked sessions through Redis, so a client that reconnects to any replica can resume there
(sidecar.resume.records has the layout).

Only parked sessions are published: when a session parks, its streams' kept deltas go out in
one write; while it stays parked, what its streams relay is queued (consecutive flushes of a
stream join one entry) and published every `PUBLISH_EVERY` seconds as one pipeline, never
awaited by the relay. Control messages and session records go out at once. Every key expires
after the grace window unless written again.

The upstream stays with the replica that opened it. That replica reads its control log and
carries out what the replica serving the client reports; if it dies, the followers see its
alive key expire and tell their clients `resume_expired` (its streams are closed as
`interrupted` when it restarts, as without a store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from sidecar.errors import ConfigError
from sidecar.resume.records import (
    Control,
    LogBatches,
    ParkedSession,
    alive_key,
    control_key,
    log_key,
    owner_field,
    session_key,
    token_key,
)
from sidecar.resume.remote import READ_BLOCK_MS, Follower
from sidecar.resume.store import Parkable, StoreUnavailable

if TYPE_CHECKING:
    from sidecar.ingress.stream import LiveStream

log = logging.getLogger("sidecar.resume")

ALIVE_TTL_S = 3  # a node's alive key outlives three missed refreshes
CONTROL_MAXLEN = 10_000
CLAIM_WAIT_S = 1.0
# A parked stream's deltas reach a follower this much later at most; in exchange a stream
# costs one XADD per interval instead of one per upstream read (measured: docs/benchmarks.md).
PUBLISH_EVERY = 0.05


class RedisStore:
    def __init__(self, url: str, instance_id: str, grace: float, max_entries: int) -> None:
        self.url = url
        self.node = f"{instance_id}-{secrets.token_hex(4)}"  # unique even if ids collide
        self.ttl_ms = max(1, round(grace * 1000))
        self.max_entries = max_entries
        self.client = redis.Redis.from_url(
            url, socket_timeout=READ_BLOCK_MS / 1000 + 2, socket_connect_timeout=2
        )
        self.parked: dict[str, Parkable] = {}  # token key -> a session parked here
        self.pending: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.wake = asyncio.Event()  # commands to send at once
        self.batches = LogBatches()  # deltas to publish at the next interval
        self.batches_ready = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.failing = False  # logged once per outage

    async def start(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            await self.client.aclose()
            raise ConfigError(
                f"--resume-store {redact(self.url)}: cannot connect ({exc}); start Redis "
                "there or leave --resume-store out"
            ) from None
        loop = asyncio.get_running_loop()
        self.tasks = [
            # Commands at once; the deltas of parked streams every PUBLISH_EVERY at most.
            loop.create_task(self._send_when(self.wake, self._flush)),
            loop.create_task(self._send_when(self.batches_ready, self._publish, PUBLISH_EVERY)),
            loop.create_task(self._read_controls()),
            loop.create_task(self._stay_alive()),
        ]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._flush()
            await self._publish()
            await self.client.delete(alive_key(self.node), control_key(self.node))
        await self.client.aclose()

    # Owner side: publishing a parked session ------------------------------------------------

    def park(self, session: Parkable) -> None:
        tkey = token_key(session.token)
        self.parked[tkey] = session
        key = session_key(tkey)
        fields = {"session": session.session_id, "tenant": session.tenant}
        for stream_id, live in session.live.items():
            if isinstance(live, Follower) or live.replay is None:
                continue  # followed from another replica: its owner publishes it
            fields[owner_field(stream_id)] = self.node
            texts = live.replay.texts_after(live.replay.first_seq - 1) or []
            self._add(tkey, stream_id, live.replay.first_seq, texts)
            if live.pending_done is not None:
                self._end(tkey, stream_id, live.pending_done)
        self._queue("hset", key, mapping=fields)
        self._queue("pexpire", key, self.ttl_ms)

    def append(self, session: Parkable, live: LiveStream, deltas: int) -> None:
        if live.replay is None or not deltas:
            return
        texts = live.replay.newest(deltas)
        first = live.account.deltas - len(texts) + 1
        self._add(token_key(session.token), live.account.request_id, first, texts)

    def end(self, session: Parkable, live: LiveStream, frame: bytes) -> None:
        tkey = token_key(session.token)
        if tkey in self.parked:  # published: a replica may be following it
            self._end(tkey, live.account.request_id, frame)

    def unpark(self, session: Parkable) -> None:
        tkey = token_key(session.token)
        if self.parked.pop(tkey, None) is None:
            return
        owned = [
            owner_field(sid) for sid, live in session.live.items() if not isinstance(live, Follower)
        ]
        if owned:
            self._queue("hdel", session_key(tkey), *owned)

    def _add(self, tkey: str, stream_id: str, first_seq: int, texts: list[str]) -> None:
        self.batches.add(log_key(tkey, stream_id), first_seq, texts)
        self.batches_ready.set()

    def _end(self, tkey: str, stream_id: str, frame: bytes) -> None:
        self.batches.end(log_key(tkey, stream_id), frame)
        self.batches_ready.set()

    def _queue(self, command: str, *args: Any, **kwargs: Any) -> None:
        self.pending.append((command, args, kwargs))
        self.wake.set()

    async def _send_when(
        self, ready: asyncio.Event, send: Callable[[], Awaitable[None]], pause: float = 0.0
    ) -> None:
        """Run `send` each time `ready` is set (after `pause`, to let more writes join)."""
        while True:
            await ready.wait()
            if pause:
                await asyncio.sleep(pause)
            ready.clear()
            try:
                await send()
            except (RedisError, OSError) as exc:
                self._outage(exc)

    async def _publish(self) -> None:
        logs = self.batches.take()
        if not logs:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, entries in logs.items():
            for entry in entries:
                fields: dict[Any, Any] = entry  # redis-py's field types are invariant
                pipe.xadd(key, fields, maxlen=self.max_entries, approximate=True)
            pipe.pexpire(key, self.ttl_ms)
        await pipe.execute()

    async def _flush(self) -> None:
        commands, self.pending = self.pending, []
        if not commands:
            return
        pipe = self.client.pipeline(transaction=False)
        for command, args, kwargs in commands:
            getattr(pipe, command)(*args, **kwargs)
        await pipe.execute()
        if self.failing:
            self.failing = False
            log.warning("resume store %s reachable again", redact(self.url))

    def _outage(self, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            log.warning(
                "resume store %s unreachable (%s): parked streams can be resumed on this "
                "replica only until it is back",
                redact(self.url),
                exc,
                extra={"event": "resume_store_unreachable"},
            )

    async def _read_controls(self) -> None:
        key, after = control_key(self.node), b"0-0"
        while True:
            try:
                answer: Any = await self.client.xread({key: after}, block=READ_BLOCK_MS, count=256)
            except (RedisError, OSError) as exc:
                self._outage(exc)
                await asyncio.sleep(1)
                continue
            for _key, entries in answer or ():
                for entry_id, fields in entries:
                    after = entry_id
                    self._on_control(Control.parse(fields))

    def _on_control(self, message: Control | None) -> None:
        if message is None:
            return
        session = self.parked.get(message.tkey)
        if session is None:
            return
        # Still resumable while a replica serves it, even if no delta comes for a while.
        self._queue("pexpire", session_key(message.tkey), self.ttl_ms)
        if message.stream_id:
            self._queue("pexpire", log_key(message.tkey, message.stream_id), self.ttl_ms)
        session.remote_control(message.op, message.stream_id, message.seq)

    async def _stay_alive(self) -> None:
        while True:
            with contextlib.suppress(RedisError, OSError):
                await self.client.set(alive_key(self.node), b"1", ex=ALIVE_TTL_S)
            await asyncio.sleep(1)

    # Follower side: a client here resumes a stream parked elsewhere -------------------------

    async def claim(self, token: str, tenant: str, wait: bool = True) -> ParkedSession | None:
        """A client reconnecting at once may be faster than its old replica noticing the loss
        (and publishing the session): an unknown token is looked up for up to a second."""
        key = session_key(token_key(token))
        deadline = asyncio.get_running_loop().time() + (CLAIM_WAIT_S if wait else 0)
        while True:
            try:
                fields: Any = await self.client.hgetall(key)
            except (RedisError, OSError) as exc:
                self._outage(exc)
                return None
            if fields or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        parked = ParkedSession.parse(fields)
        if parked is None or parked.tenant != tenant:
            return None
        others = {sid: node for sid, node in parked.owners.items() if node != self.node}
        return ParkedSession(parked.session_id, parked.tenant, others)

    def follow(self, token: str, stream_id: str, owner: str) -> Follower:
        return Follower(self, token_key(token), stream_id, owner)

    async def read(
        self, tkey: str, stream_id: str, after: bytes
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        try:
            answer: Any = await self.client.xread(
                {log_key(tkey, stream_id): after}, block=READ_BLOCK_MS, count=512
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from None
        return [entry for _key, entries in answer or () for entry in entries]

    def control(self, owner: str, message: Control) -> None:
        self._queue(
            "xadd", control_key(owner), message.fields(), maxlen=CONTROL_MAXLEN, approximate=True
        )

    async def owner_alive(self, owner: str) -> bool:
        try:
            return bool(await self.client.exists(alive_key(owner)))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from None


def redact(url: str) -> str:
    """The URL without a password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
