"""The client: one WebSocket at a time to `/v1/stream`, kept and resumed across network cuts.

One supervisor task owns the connection: it dials (with backoff and full jitter after a
failure), then reads frames until the connection ends. A writer task sends what the rest of the
client queues, in order. When the connection ends while answers run, the supervisor reconnects
with the session's resume token and asks for each running answer `after_seq` = the last seq
received; with nothing running, it waits for the next `generate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sidecar.client.acks import AckBatcher
from sidecar.client.dial import RETRYABLE, Timeouts, Token, dial
from sidecar.client.errors import ClientError, Code
from sidecar.client.frames import apply_frame
from sidecar.client.policy import Backoff, MessageBudget
from sidecar.client.stream import AckMode, State, Stream

ClientState = Literal["connecting", "open", "reconnecting", "idle", "closed"]
DEFAULT_BACKOFF = Backoff()
DEFAULT_TIMEOUTS = Timeouts()


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: Token | None = None,
        tenant: str | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        ack_interval: float = 0.1,
        max_messages_per_second: float = 20.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.url, self.token, self.tenant = url, token, tenant
        self.backoff, self.timeouts, self._rng = backoff, timeouts, rng
        self._budget = MessageBudget(max_messages_per_second, time.monotonic())
        self._acks = AckBatcher(ack_interval, self._budget, self._queue)
        self.state: ClientState = "connecting"
        self.session: str | None = None
        self.resume_token: str | None = None
        self.streams: dict[str, Stream] = {}  # running, in the order they started
        self._pending_cancels: dict[str, int] = {}  # cancelled while disconnected: id → rendered
        self._outbox: deque[dict[str, Any]] = deque()
        self._outbox_ready = asyncio.Event()
        self._wanted = asyncio.Event()  # a connection is needed
        self._ws: ClientConnection | None = None
        self._ready: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._next_id = 0
        # Errors not about one stream (rate_limited, connection_lost, ...), the latest last.
        self.connection_errors: deque[ClientError] = deque(maxlen=100)

    # Public API ----------------------------------------------------------------------------

    async def start(self) -> Client:
        """Connect and wait for the sidecar's hello (`connect()` calls this)."""
        self._ready = asyncio.get_running_loop().create_future()
        self._wanted.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="sidecar-client")
        await self._ready
        return self

    def generate(
        self, body: dict[str, Any], *, path: str | None = None, ack: AckMode = "iteration"
    ) -> Stream:
        """Start an answer: iterate the stream for deltas, then `await stream.result()`."""
        if self.is_closed():
            raise ClientError(Code.CLOSED, "this client was closed; connect again")
        self._next_id += 1
        stream = Stream(f"r{self._next_id}", body, path, ack, self)
        self.streams[stream.id] = stream
        if self._ws is not None:
            self._send_generate(stream)
        self._wanted.set()
        return stream

    async def close(self) -> None:
        """Close for good: pending acks go out, running answers fail with code `closed`."""
        if self.is_closed():
            return
        ws = self._ws
        self._acks.flush(force=True)
        frames = list(self._outbox)
        self._outbox.clear()
        self._shutdown(ClientError(Code.CLOSED, "the client was closed"))
        await self._stop_supervisor()
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                for frame in frames:
                    await ws.send(_encode(frame))
                await ws.close()

    async def abort(self) -> None:
        """Vanish: drop the connection without a close frame and without reconnecting, like a
        killed tab or a lost network (for simulations and tests). Answers fail with `closed`."""
        ws = self._ws
        self._shutdown(ClientError(Code.CLOSED, "the client was aborted"))
        if ws is not None:
            ws.transport.abort()
        await self._stop_supervisor()

    def is_closed(self) -> bool:
        return self.state == "closed"

    async def __aenter__(self) -> Client:
        return self if self._supervisor is not None else await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # Stream callbacks ----------------------------------------------------------------------

    def on_rendered(self, stream: Stream) -> None:
        self._acks.mark(stream)

    def on_cancel(self, stream: Stream) -> None:
        self.forget(stream)
        if stream.state is not State.SENT:
            return  # it never reached the sidecar
        if self._ws is not None:
            self._queue_cancel(stream.id, stream.rendered_seq, stream.acked_seq)
        else:
            self._pending_cancels[stream.id] = stream.rendered_seq

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)
        self._acks.discard(stream.id)

    # Connection ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        attempt = 0
        while not self.is_closed():
            await self._wanted.wait()
            resuming = self._pending_cancels or any(
                s.state is State.SENT for s in self.streams.values()
            )
            try:
                ws, hello = await dial(
                    self.url,
                    self.token,
                    self.tenant,
                    self.resume_token if resuming else None,
                    self.timeouts,
                )
            except ClientError as exc:
                self._shutdown(exc)
                return
            except RETRYABLE as exc:
                if attempt >= self.backoff.max_attempts:
                    self._give_up(exc)
                    attempt = 0
                    continue
                self.state = "reconnecting"
                await asyncio.sleep(self.backoff.delay(attempt, self._rng()))
                attempt += 1
                continue
            code, reason = await self._serve(ws, hello)
            if self.is_closed():
                return
            if code == 1008 and "revoked" in reason:
                self._shutdown(ClientError("revoked_api_key", "this client's API key was revoked"))
                return
            if not self.streams and not self._pending_cancels:
                self._wanted.clear()
                self.state = "idle"
                attempt = 0
                continue
            self.state = "reconnecting"
            await asyncio.sleep(self.backoff.delay(0, self._rng()))
            attempt = 1

    async def _serve(self, ws: ClientConnection, hello: str | bytes) -> tuple[int, str]:
        """Read frames until the connection ends; returns its close code and reason."""
        self._ws = ws
        self._outbox.clear()  # what was queued for the previous connection is re-decided
        writer = asyncio.create_task(self._write(ws))
        try:
            self._on_frame(hello)
            async for raw in ws:
                self._on_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws.close_code or 1006, ws.close_reason or ""

    async def _write(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                while self._outbox:
                    frame = self._outbox.popleft()
                    await ws.send(_encode(frame))
                    if frame["type"] == "generate" and (stream := self.streams.get(frame["id"])):
                        stream.state = State.SENT

    async def _stop_supervisor(self) -> None:
        task, self._supervisor = self._supervisor, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _give_up(self, exc: BaseException) -> None:
        first = self._ready is not None and not self._ready.done()
        tries = self.backoff.max_attempts + 1
        error = ClientError(
            Code.UNREACHABLE if first else Code.CONNECTION_LOST,
            f"cannot reach the sidecar at {self.url} after {tries} attempts ({exc or type(exc)})",
        )
        self._fail_all(error)
        self._pending_cancels.clear()
        self._wanted.clear()
        self.connection_errors.append(error)
        if first:
            self._shutdown(error)
        else:
            self.state = "idle"

    def _shutdown(self, error: ClientError) -> None:
        self.state = "closed"
        self._fail_all(error)
        self._wanted.set()  # let the supervisor see the state
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)

    def _fail_all(self, error: ClientError) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        self._acks.clear()
        for stream in streams:
            stream.fail(error.for_stream(stream.id))

    # Frames in -----------------------------------------------------------------------------

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict):
            error = ClientError(Code.PROTOCOL_ERROR, "the sidecar sent a frame that is not JSON")
            self.connection_errors.append(error)
            return
        if frame.get("type") == "hello":
            self._on_hello(frame)
            return
        for reply in apply_frame(self, frame):
            self._send(reply)

    def _on_hello(self, hello: dict[str, Any]) -> None:
        resumed = self.session is not None and hello.get("session") == self.session
        self.session = hello.get("session")
        self.resume_token = hello.get("resume_token")
        self.state = "open"
        if resumed:
            for stream_id, rendered in self._pending_cancels.items():
                self._queue_cancel(stream_id, rendered, 0)
        self._pending_cancels.clear()
        for stream in list(self.streams.values()):
            if stream.state is State.QUEUED:
                self._send_generate(stream)
            elif resumed:
                self._send({"type": "resume", "id": stream.id, "after_seq": stream.received_seq})
            else:
                self.forget(stream)
                message = "reconnected, but the sidecar no longer holds this answer"
                stream.fail(ClientError(Code.RESUME_EXPIRED, message, stream.id))
        self._acks.flush()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    # Frames out ----------------------------------------------------------------------------

    def _queue(self, frame: dict[str, Any]) -> bool:
        """Queue a frame for the open connection; False if there is none."""
        if self._ws is None:
            return False
        self._outbox.append(frame)
        self._outbox_ready.set()
        return True

    def _send(self, frame: dict[str, Any]) -> None:
        """A control frame: always goes (while connected), and spends from the budget."""
        if self._queue(frame):
            self._budget.spend(time.monotonic())

    def _send_generate(self, stream: Stream) -> None:
        frame: dict[str, Any] = {"type": "generate", "id": stream.id, "body": stream.body}
        if stream.path:
            frame["path"] = stream.path
        self._send(frame)

    def _queue_cancel(self, stream_id: str, rendered: int, acked: int) -> None:
        """The last rendered seq first: for an answer cut short, acks decide what was delivered."""
        if rendered > acked:
            self._send({"type": "ack", "id": stream_id, "seq": rendered})
        self._send({"type": "cancel", "id": stream_id})


class connect:  # a class used like a function, as websockets' `connect` is
    """`client = await connect(url, ...)` or `async with connect(url, ...) as client:`.
    Keyword arguments are those of `Client`."""

    def __init__(self, url: str, **options: Any) -> None:
        self._client = Client(url, **options)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._client.start().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()


def _encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()
