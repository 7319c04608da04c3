"""The sans-I/O response reader, fed byte scripts: whole, split at every boundary, and one
byte at a time. Every split must give the same events (body bytes may come in more pieces)."""

from __future__ import annotations

import pytest

from sidecar.upstream.h1reader import (
    End,
    Event,
    Failed,
    Head,
    Informational,
    ResponseReader,
    State,
    _delimited_by_close,
)

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_HEAD = Head(200, ((b"Transfer-Encoding", b"chunked"),), True)


def read(pieces: list[bytes], eof: bool = False) -> tuple[list[Event], ResponseReader]:
    """All events of a reader fed `pieces` (then EOF), adjacent body pieces (bytes) joined."""
    reader = ResponseReader()
    events: list[Event] = []
    for piece in pieces:
        events += reader.feed(piece)
    if eof:
        events += reader.feed_eof()
    joined: list[Event] = []
    for event in events:
        if isinstance(event, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += event
        else:
            joined.append(event)
    return joined, reader


def splits(script: bytes) -> list[list[bytes]]:
    """The script whole, cut in two at every position, and byte by byte."""
    cuts = [[script[:i], script[i:]] for i in range(len(script) + 1)]
    return [[script], *cuts, [script[i : i + 1] for i in range(len(script))]]


def same_at_every_split(script: bytes, eof: bool = False) -> tuple[list[Event], bool]:
    """The events and `reusable`, checked to be the same however the bytes are cut."""
    whole, reader = read([script], eof)
    for pieces in splits(script):
        events, other = read(pieces, eof)
        assert (events, other.reusable) == (whole, reader.reusable), pieces
    return whole, reader.reusable


def test_interim_responses_are_reported_and_the_final_answer_is_awaited() -> None:
    script = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    )
    events, reusable = same_at_every_split(script)
    assert events == [
        Informational(100, ()),
        Informational(103, ((b"Link", b"</style.css>; rel=preload"),)),
        Head(200, ((b"Content-Length", b"5"),), True),
        b"hello",
        End(True),
    ]
    assert reusable


def test_an_interim_response_alone_is_not_the_answer() -> None:
    events, reader = read([b"HTTP/1.1 100 Continue\r\n\r\n"])
    assert events == [Informational(100, ())] and reader.state is State.HEAD
    assert not reader.reusable
    assert reader.feed_eof() == [Failed("connection closed before a response", True)]


def test_chunk_extensions_and_trailers_are_not_body_nor_headers() -> None:
    script = CHUNKED + b"5;name=value\r\nhello\r\n6;x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    events, reusable = same_at_every_split(script)
    assert events == [CHUNKED_HEAD, b"hello world", End(True)] and reusable


def test_a_body_cut_mid_chunk_fails_instead_of_ending() -> None:
    events, reusable = same_at_every_split(CHUNKED + b"a\r\nhello", eof=True)
    assert events == [CHUNKED_HEAD, b"hello", Failed("connection closed mid-body", True)]
    assert not reusable


def test_a_sized_body_cut_short_fails() -> None:
    script = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"
    events, reusable = same_at_every_split(script, eof=True)
    assert events[-2:] == [b"hello", Failed("connection closed mid-body", True)]
    assert not reusable


def test_a_parse_error_mid_body_fails_and_nothing_is_reported_after_it() -> None:
    script = CHUNKED + b"5\r\nhelloXX\r\n"  # no CRLF after the chunk's data
    events, reusable = same_at_every_split(script)
    assert events[:2] == [CHUNKED_HEAD, b"hello"] and len(events) == 3
    failure = events[2]
    assert isinstance(failure, Failed) and failure.reason.startswith("bad HTTP response: ")
    assert not reusable
    reader = read([script])[1]
    assert reader.feed(b"5\r\nmore!\r\n") == [] and reader.feed_eof() == []
    assert reader.state is State.FAILED


def test_a_body_without_length_or_chunks_ends_cleanly_at_the_close() -> None:
    script = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n"
    events, reusable = same_at_every_split(script, eof=True)
    assert events == [
        Head(200, ((b"Content-Type", b"text/event-stream"),), False),
        b"data: 1\n\n",
        End(False),
    ]
    assert not reusable  # the connection is gone with the body
    http10 = b"HTTP/1.0 200 OK\r\n\r\nabc"
    assert same_at_every_split(http10, eof=True)[0][1:] == [b"abc", End(False)]


def test_connection_close_ends_the_body_but_not_the_reuse() -> None:
    script = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    events, reusable = same_at_every_split(script)
    assert events[1:] == [b"hi", End(False)] and not reusable


def test_a_keep_alive_is_reusable_after_a_complete_answer_and_not_after_extra_bytes() -> None:
    script = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert same_at_every_split(script) == (
        [Head(200, ((b"Content-Length", b"2"),), True), b"hi", End(True)],
        True,
    )
    for extra in (b"HTTP/1.1 200 OK\r\n\r\n", b"garbage"):
        events, reusable = same_at_every_split(script + extra)
        assert events[-1] == End(True) and not reusable  # bytes nobody asked for
    reader = read([script])[1]
    assert reader.feed(b"") == [] and reader.reusable  # an empty read is nothing


def test_a_bodyless_status_ends_at_its_head() -> None:
    assert same_at_every_split(b"HTTP/1.1 204 No Content\r\n\r\n") == (
        [Head(204, (), True), End(True)],
        True,
    )


@pytest.mark.parametrize(
    ("pieces", "received"),
    [([], False), ([b""], False), ([b"HTTP/1.1 2"], True)],
)
def test_eof_before_the_head_fails_and_says_whether_anything_came(
    pieces: list[bytes], received: bool
) -> None:
    events, reader = read(pieces, eof=True)
    assert events == [Failed("connection closed before a response", received)]
    assert reader.state is State.FAILED


@pytest.mark.parametrize(
    "script",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_a_malformed_or_unasked_for_head_fails(script: bytes) -> None:
    events, reusable = same_at_every_split(script, eof=True)
    assert len(events) == 1 and isinstance(events[0], Failed) and events[0].received
    assert events[0].reason.startswith("bad HTTP response: ") and not reusable


@pytest.mark.parametrize(
    ("headers", "by_close"),
    [
        ((), True),
        (((b"Content-Length", b"3"),), False),
        (((b"transfer-encoding", b"chunked"),), False),
        (((b"Transfer-Encoding", b"gzip, chunked"),), False),
        (((b"Transfer-Encoding", b"gzip"),), True),
    ],
)
def test_which_bodies_the_close_delimits(
    headers: tuple[tuple[bytes, bytes], ...], by_close: bool
) -> None:
    assert _delimited_by_close(headers) is by_close
