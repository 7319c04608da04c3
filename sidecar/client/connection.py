"""The client: one WebSocket at a time to `/v1/stream`, kept and resumed across network cuts.

One supervisor task owns the connection: it opens it (with backoff and full jitter after a
failure), reads the `hello`, then reads frames until the connection ends. A writer task sends
what the rest of the client queues, in order. When the connection ends while answers run, the
supervisor reconnects with the session's resume token and asks for each running answer
`after_seq` = the last seq received; with nothing running, it waits for the next `generate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from sidecar.client.errors import ClientError, Code
from sidecar.client.frames import apply_frame
from sidecar.client.policy import Backoff, MessageBudget
from sidecar.client.stream import AckMode, State, Stream

Token = str | Callable[[], str | Awaitable[str]]
ClientState = Literal["connecting", "open", "reconnecting", "idle", "closed"]
FATAL_STATUSES = frozenset({401, 403})  # a credential or origin problem: retrying cannot help
DEFAULT_BACKOFF = Backoff()
RETRYABLE = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError)


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: Token | None = None,
        tenant: str | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        ack_interval: float = 0.1,
        max_messages_per_second: float = 20.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        open_timeout: float = 10.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.url, self.token, self.tenant = url, token, tenant
        self.backoff, self.ack_interval, self.open_timeout = backoff, ack_interval, open_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self._rng = rng
        self._budget = MessageBudget(max_messages_per_second, time.monotonic())
        self.state: ClientState = "connecting"
        self.session: str | None = None
        self.resume_token: str | None = None
        self.streams: dict[str, Stream] = {}  # running, in the order they started
        self._pending_cancels: dict[str, int] = {}  # cancelled while disconnected: id → rendered
        self._ack_dirty: dict[str, Stream] = {}
        self._ack_timer: asyncio.TimerHandle | None = None
        self._outbox: deque[dict[str, Any]] = deque()
        self._outbox_ready = asyncio.Event()
        self._wanted = asyncio.Event()  # a connection is needed
        self._ws: ClientConnection | None = None
        self._ready: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._next_id = 0
        self.connection_errors: list[ClientError] = []  # errors not about one stream, latest last

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
        self._flush_acks(force=True)
        frames = list(self._outbox)
        self._shutdown(ClientError(Code.CLOSED, "the client was closed"))
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                for frame in frames:
                    await ws.send(_encode(frame))
            await ws.close()
        await self._stop_supervisor()

    async def abort(self) -> None:
        """Vanish: drop the connection without a close frame and without reconnecting, like a
        killed tab or a lost network (for simulations and tests). Answers fail with `closed`."""
        ws = self._ws
        self._shutdown(ClientError(Code.CLOSED, "the client was aborted"))
        if ws is not None:
            ws.transport.abort()
        await self._stop_supervisor()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def is_closed(self) -> bool:
        return self.state == "closed"

    # Stream callbacks ----------------------------------------------------------------------

    def on_rendered(self, stream: Stream) -> None:
        self._ack_dirty[stream.id] = stream
        if self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(self.ack_interval, self._on_ack_timer)

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
        self._ack_dirty.pop(stream.id, None)

    # Connection ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        attempt = 0
        while not self.is_closed():
            await self._wanted.wait()
            resuming = self.resume_token is not None and self._has_sent_streams()
            try:
                ws = await self._open(resuming)
                hello = await asyncio.wait_for(ws.recv(), self.open_timeout)
            except ClientError as exc:
                self._shutdown(exc)
                return
            except RETRYABLE as exc:
                if attempt >= self.backoff.max_attempts:
                    self._give_up(exc)
                    attempt = 0
                    continue
                self._set_state("reconnecting")
                await asyncio.sleep(self.backoff.delay(attempt, self._rng()))
                attempt += 1
                continue
            attempt = 0
            code, reason = await self._serve(ws, hello)
            if self.is_closed():
                return
            if code == 1008 and "revoked" in reason:
                self._shutdown(ClientError("revoked_api_key", "this client's API key was revoked"))
                return
            if not self.streams and not self._pending_cancels:
                self._wanted.clear()
                self._set_state("idle")
                continue
            self._set_state("reconnecting")
            await asyncio.sleep(self.backoff.delay(0, self._rng()))
            attempt = 1

    async def _open(self, resuming: bool) -> ClientConnection:
        token = self.token() if callable(self.token) else self.token
        credential = await token if isinstance(token, Awaitable) else token
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        if self.tenant:
            headers["X-Sidecar-Tenant"] = self.tenant
        url = self.url
        if resuming and self.resume_token:
            url = _with_query(url, resume_token=self.resume_token)
        try:
            return await ws_connect(
                url,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in FATAL_STATUSES:
                raise ClientError(
                    Code.REFUSED, _refusal(status, bytes(exc.response.body))
                ) from None
            raise

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
            self._set_state("idle")

    def _shutdown(self, error: ClientError) -> None:
        self._set_state("closed")
        self._fail_all(error)
        self._wanted.set()  # let the supervisor see the state
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)

    def _fail_all(self, error: ClientError) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        self._ack_dirty.clear()
        for stream in streams:
            stream.fail(error.for_stream(stream.id))

    def _set_state(self, state: ClientState) -> None:
        self.state = state

    def _has_sent_streams(self) -> bool:
        return bool(self._pending_cancels) or any(
            s.state is State.SENT for s in self.streams.values()
        )

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
        self._set_state("open")
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
        self._flush_acks()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    # Frames out ----------------------------------------------------------------------------

    def _send(self, frame: dict[str, Any], counted: bool = True) -> None:
        """Queue a frame for the open connection; control frames always spend a token."""
        if self._ws is None:
            return
        if counted:
            self._budget.spend(time.monotonic())
        self._outbox.append(frame)
        self._outbox_ready.set()

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

    def _on_ack_timer(self) -> None:
        self._ack_timer = None
        self._flush_acks()

    def _flush_acks(self, force: bool = False) -> None:
        if self._ws is None:
            return  # the next hello flushes
        now = time.monotonic()
        for stream in list(self._ack_dirty.values()):
            if stream.ended or stream.rendered_seq <= stream.acked_seq:
                del self._ack_dirty[stream.id]
                continue
            if not force and not self._budget.try_take(now):
                break
            self._send({"type": "ack", "id": stream.id, "seq": stream.rendered_seq}, counted=force)
            stream.acked_seq = stream.rendered_seq
            del self._ack_dirty[stream.id]
        if self._ack_dirty and self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(self.ack_interval, self._on_ack_timer)


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


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _refusal(status: int, body: bytes | None) -> str:
    """The sidecar's refusal body is `{"error": {"code", "message"}}`."""
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        error = orjson.loads(body or b"{}")["error"]
        return f"the sidecar refused the connection ({status} {error['code']}): {error['message']}"
    return f"the sidecar refused the connection with HTTP {status}"
