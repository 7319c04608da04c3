"""Reading one HTTP/1.1 response, sans I/O: bytes in, events out.

A client streaming a model's answer must know four things about the bytes on its connection,
and the tokenizer (`httptools`, i.e. llhttp, the C parser uvicorn uses: fast, and kept for that
reason) answers none of them directly:

* Where the answer starts. `100 Continue` and `103 Early Hints` are interim responses, which
  llhttp reports as complete messages of their own. Taken for the answer, the connection would
  go back to the pool while the real answer is still coming, for the next request to read.
* Where it ends. A chunked or sized body ends where its framing says; a body with neither ends
  when the server closes the connection, which is then a clean end (llhttp cannot see an EOF).
  Any other EOF before the end means the answer was cut off.
* Whether it broke. A framing error mid-body is a failure, not an end.
* Whether the connection may carry the next request: only after a complete answer on a
  keep-alive connection, and only if nothing followed it.

`ResponseReader` turns llhttp's callbacks into those answers as events. It never raises: a
malformed or cut response is a `Failed` event, after which it reports nothing more. One reader
reads one response (and the interim responses before it); the asyncio shell
(`sidecar.upstream.http1`) makes one per request.

Body bytes are events as they are, `bytes`, not wrapped: a body chunk per token is the hot
path of the relay, and a wrapper object per chunk was a measurable share of its cost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httptools

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Informational:
    """An interim 1xx response (100 Continue, 103 Early Hints): the answer is still to come."""

    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Head:
    """The final response's status line and headers; its body follows."""

    status: int
    headers: Headers
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class End:
    """The body ended where its framing says, or at the close for a body delimited by it."""

    keep_alive: bool


@dataclass(frozen=True, slots=True)
class Failed:
    """The response is malformed or was cut off. `received`: some of it arrived (if not, and the
    connection was idle in a pool, the server may have closed it without reading the request)."""

    reason: str
    received: bool


Event = Informational | Head | bytes | End | Failed  # bytes: body data, chunk framing removed


class State(enum.Enum):
    HEAD = "waiting for the final response's head"
    BODY = "reading the body"
    DONE = "ended cleanly"
    FAILED = "failed"


# Module globals: found faster than enum members on the per-chunk path.
HEAD, BODY, DONE, FAILED = State.HEAD, State.BODY, State.DONE, State.FAILED


class ResponseReader:
    """Feed it the connection's bytes with `feed()`, and `feed_eof()` when the server closes."""

    __slots__ = (
        "_events",
        "_extra",
        "_headers",
        "_interim",
        "_keep_alive",
        "_parser",
        "_received",
        "head",
        "state",
    )

    def __init__(self) -> None:
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._events: list[Event] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._interim = False  # inside a 1xx message
        self.head: Head | None = None
        self._keep_alive = False
        self._received = False
        self._extra = False  # bytes came after the end: the connection cannot be trusted
        self.state = HEAD

    @property
    def reusable(self) -> bool:
        """The connection may carry another request."""
        return self.state is DONE and self._keep_alive and not self._extra

    def feed(self, data: bytes) -> list[Event]:
        parser = self._parser
        if parser is None:  # ended or failed: whatever comes now belongs to no request
            self._extra = self._extra or bool(data)
            return []
        if not data:
            return []
        self._received = True
        events: list[Event] = []
        self._events = events
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.state is DONE:
                self._extra = True  # garbage after a complete response
            elif self.state is not FAILED:
                self._fail(f"bad HTTP response: {exc}")
        return events

    def feed_eof(self) -> list[Event]:
        events: list[Event] = []
        self._events = events
        if self.state is HEAD:
            self._fail("connection closed before a response")
        elif self.state is BODY:
            assert self.head is not None
            if _delimited_by_close(self.head.headers):
                self._end(False)
            else:
                self._fail("connection closed mid-body")
        return events

    def _end(self, keep_alive: bool) -> None:
        self.state = DONE
        self._parser = None  # it refers back to this reader: leave no cycle behind
        self._keep_alive = keep_alive
        self._events.append(End(keep_alive))

    def _fail(self, reason: str) -> None:
        self.state = FAILED
        self._parser = None
        self._events.append(Failed(reason, self._received))

    # httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.state is DONE:
            self._extra = True  # a second response to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.state is HEAD:  # not the trailers
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.state is not HEAD:
            return
        assert self._parser is not None
        status = self._parser.get_status_code()
        headers = tuple(self._headers)
        self._headers = []
        if status == 101:
            self._fail("bad HTTP response: 101 Switching Protocols, but no upgrade was asked for")
        elif status < 200:
            self._interim = True
            self._events.append(Informational(status, headers))
        else:
            self.state = BODY
            self.head = Head(status, headers, self._parser.should_keep_alive())
            self._events.append(self.head)

    def on_body(self, body: bytes) -> None:
        if self.state is BODY:
            self._events.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False  # its end is not the answer's: keep waiting for the head
        elif self.state is BODY:
            assert self._parser is not None
            self._end(self._parser.should_keep_alive())


def _delimited_by_close(headers: Headers) -> bool:
    """Neither chunked nor sized (RFC 9112 §6.3): the body runs until the server closes.
    Bodyless statuses (204, 304) end at once in llhttp and never reach EOF in the body."""
    sized = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            return not value.rstrip().lower().endswith(b"chunked")
        if lower == b"content-length":
            sized = True
    return not sized
