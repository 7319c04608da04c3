"""The WebSocket sink writes what one upstream read produced as one write, with the `start`
frame before the first deltas and the `done` frame after the last ones when they are ready
together (a send per frame was the largest per-stream cost on the relay's thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import orjson

from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.ingress.replay import ReplayBudget, ReplayBuffer
from sidecar.ingress.stream import START_ALONE_AFTER, LiveStream, WebSocketSink
from sidecar.ingress.transport import ClientGone
from sidecar.relay.pump import pump
from tests.unit.test_accounting import account


class FakeSession:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[list[dict[str, Any]]] = []
        self.parked = False
        self.fail = fail
        self.answered_streams: list[LiveStream] = []
        self.kept: list[LiveStream] = []

    def _write(self, frames: list[bytes], live: LiveStream | None = None, deltas: int = 0) -> None:
        if self.fail:
            raise ClientGone
        self.writes.append([orjson.loads(f) for f in frames])
        if live is not None:
            live.account.on_written(deltas)

    def _send_quietly(self, frames: list[bytes]) -> None:
        self.writes.append([orjson.loads(f) for f in frames])

    def answered(self, live: LiveStream) -> None:
        self.answered_streams.append(live)

    def kept_done(self, live: LiveStream) -> None:
        self.kept.append(live)


class Observer:
    def first_token(self, account: StreamAccount, ttft: float) -> None:
        pass

    def gap(self, account: StreamAccount, seconds: float) -> None:
        pass


def _event(text: str, reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": reason}
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n'


async def _chunks(reads: list[bytes]) -> AsyncIterator[bytes]:
    for data in reads:
        yield data


def _live(acc: StreamAccount, replay: int = 0) -> LiveStream:
    buffer = ReplayBuffer(replay, ReplayBudget(0)) if replay else None
    stream = SimpleNamespace(account=acc, completing=lambda: None)
    return LiveStream(stream, buffer)  # type: ignore[arg-type]


def _relay(reads: list[bytes], head: bool | None, session: FakeSession, replay: int = 0) -> Any:
    """`head`: whether the first read came with the headers (None: `start` was sent before)."""
    live = _live(account(request_id="r1", t_start=0.0, trace_id="t"), replay)
    sink = WebSocketSink(session, live)  # type: ignore[arg-type]

    async def run() -> bool:
        if head is not None:
            await sink.opened(body_ready=head)
        return await pump(_chunks(reads), live.account, sink, Observer(), lambda: 1.0)

    finished = asyncio.run(run())
    return finished, sink, live


def test_start_first_deltas_and_done_each_share_a_write() -> None:
    session = FakeSession()
    reads = [_event("a") + _event("b"), _event("c", "stop") + USAGE + b"data: [DONE]\n\n"]
    finished, sink, live = _relay(reads, True, session)
    assert finished and sink.done_sent and session.answered_streams == [live]
    kinds = [[frame["type"] for frame in write] for write in session.writes]
    assert kinds == [["start", "delta", "delta"], ["delta", "done"]]
    assert session.writes[1][1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3}
    assert live.account.written == 3  # deltas only: start and done are not counted


def test_done_alone_when_the_end_comes_in_its_own_read() -> None:
    session = FakeSession()
    reads = [_event("a", "stop"), b"data: [DONE]\n\n"]
    _finished, sink, _live = _relay(reads, None, session)
    kinds = [[frame["type"] for frame in write] for write in session.writes]
    assert kinds == [["delta"], ["done"]] and sink.done_sent


def test_no_done_without_the_upstream_end() -> None:
    session = FakeSession()
    finished, sink, _live = _relay([_event("a")], None, session)
    assert not finished and not sink.done_sent
    assert [[frame["type"] for frame in write] for write in session.writes] == [["delta"]]


def test_a_failed_write_with_a_replay_buffer_holds_the_stream_and_its_done() -> None:
    session = FakeSession(fail=True)
    reads = [_event("a", "stop") + b"data: [DONE]\n\n"]
    finished, sink, live = _relay(reads, None, session, replay=8)
    assert finished and live.held
    assert not sink.done_sent  # the relay keeps `done` for the resume
    assert live.replay is not None and live.replay.texts_after(0) == ["a"]
    assert not asyncio.run(sink.completed())  # the end waits for the resume...
    assert live.pending_done is not None and session.kept == [live]  # ...and is shared


def test_latency_samples_are_taken_after_the_write_and_keep_first_token_apart() -> None:
    session = FakeSession()
    seen: list[tuple[str, float, int]] = []  # (kind, seconds, writes done when observed)

    class Recording:
        def first_token(self, account: StreamAccount, ttft: float) -> None:
            seen.append(("ttft", ttft, len(session.writes)))

        def gap(self, account: StreamAccount, seconds: float) -> None:
            seen.append(("gap", seconds, len(session.writes)))

    times = iter([1.5, 1.75])
    live = _live(account(request_id="r1", t_start=1.0))
    sink = WebSocketSink(session, live)  # type: ignore[arg-type]
    reads = [_event("a") + _event("b"), _event("c")]
    asyncio.run(pump(_chunks(reads), live.account, sink, Recording(), lambda: next(times)))
    assert seen == [("ttft", 0.5, 1), ("gap", 0.0, 1), ("gap", 0.25, 2)]


async def _slow_chunks(reads: list[bytes], first_after: float) -> AsyncIterator[bytes]:
    await asyncio.sleep(first_after)
    for data in reads:
        yield data


def _new_sink() -> tuple[FakeSession, LiveStream, WebSocketSink]:
    """A fresh session and a stream whose sink has not written anything yet."""
    session = FakeSession()
    live = _live(account(request_id="r1", t_start=0.0, trace_id="t"))
    return session, live, WebSocketSink(session, live)  # type: ignore[arg-type]


def _accepted_then(first_after: float) -> list[list[str]]:
    """The model server accepted (headers, no body yet); its first token `first_after` s later."""
    session, live, sink = _new_sink()
    reads = [_event("a"), _event("b", "stop") + b"data: [DONE]\n\n"]

    async def run() -> None:
        await sink.opened(body_ready=False)
        chunks = _slow_chunks(reads, first_after)
        await pump(chunks, live.account, sink, Observer(), lambda: 1.0)

    asyncio.run(run())
    return [[frame["type"] for frame in write] for write in session.writes]


def test_start_waits_briefly_to_share_the_first_tokens_write() -> None:
    assert _accepted_then(0.0) == [["start", "delta"], ["delta", "done"]]


def test_start_goes_alone_when_the_model_server_is_slow_to_answer() -> None:
    assert _accepted_then(START_ALONE_AFTER + 0.1) == [["start"], ["delta"], ["delta", "done"]]


def test_a_stream_that_ended_before_its_first_token_sends_no_late_start() -> None:
    session, live, sink = _new_sink()

    async def run() -> None:
        await sink.opened(body_ready=False)
        live.account.finish(Outcome.CLIENT_CANCELLED, 1.0)  # cancelled while the model thought
        await asyncio.sleep(START_ALONE_AFTER + 0.05)

    asyncio.run(run())
    assert session.writes == []


def test_an_empty_answer_sends_start_and_done_together() -> None:
    session, _live_stream, sink = _new_sink()

    async def run() -> None:
        await sink.opened(body_ready=False)
        assert await sink.completed()

    asyncio.run(run())
    assert [[frame["type"] for frame in write] for write in session.writes] == [["start", "done"]]
