"""A stream's sequence, iteration, acks and cancel, and what each sidecar frame does to it
(sidecar/client/stream.py and frames.py), without sockets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from sidecar.client.errors import ClientError
from sidecar.client.frames import apply_frame
from sidecar.client.stream import Delta, Result, State, Stream, Usage


@dataclass
class Owner:
    streams: dict[str, Stream] = field(default_factory=dict)
    connection_errors: list[ClientError] = field(default_factory=list)
    rendered: list[tuple[str, int]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def on_rendered(self, stream: Stream) -> None:
        self.rendered.append((stream.id, stream.rendered_seq))

    def on_cancel(self, stream: Stream) -> None:
        self.cancelled.append(stream.id)

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)

    def start(self, ack: str = "iteration") -> Stream:
        stream = Stream("r1", {}, None, ack, self)  # type: ignore[arg-type]
        stream.state = State.SENT
        self.streams[stream.id] = stream
        return stream


def deltas(stream_id: str, seqs: range) -> list[dict[str, object]]:
    return [{"type": "delta", "id": stream_id, "seq": s, "text": f"t{s}"} for s in seqs]


async def drain(stream: Stream) -> list[int]:
    return [delta.seq async for delta in stream]


def test_deltas_come_out_once_in_order_then_the_result() -> None:
    owner = Owner()
    stream = owner.start()
    frames = [{"type": "start", "id": "r1", "trace_id": "abc"}, *deltas("r1", range(1, 4))]
    frames += deltas("r1", range(2, 6))  # a replay overlapping what was received
    usage = {"prompt_tokens": 2, "completion_tokens": 5}
    frames.append({"type": "done", "id": "r1", "finish_reason": "stop", "usage": usage})
    for frame in frames:
        assert apply_frame(owner, frame) == []

    async def read() -> tuple[list[int], Result]:
        return await drain(stream), await stream.result()

    seqs, result = asyncio.run(read())
    assert seqs == [1, 2, 3, 4, 5]
    assert result == Result("stop", Usage(2, 5))
    assert stream.trace_id == "abc" and "r1" not in owner.streams
    assert owner.rendered[-1] == ("r1", 5)  # iteration marks what it handed out


def test_a_gap_fails_the_stream_and_cancels_it_at_the_sidecar() -> None:
    owner = Owner()
    stream = owner.start()
    apply_frame(owner, deltas("r1", range(1, 2))[0])
    replies = apply_frame(owner, {"type": "delta", "id": "r1", "seq": 3, "text": "x"})
    assert replies == [{"type": "cancel", "id": "r1"}]
    with pytest.raises(ClientError) as failure:
        asyncio.run(drain(stream))
    assert failure.value.code == "sequence_gap" and failure.value.stream_id == "r1"


def test_an_error_frame_fails_its_stream_with_the_sidecars_code() -> None:
    owner = Owner()
    stream = owner.start()
    for frame in deltas("r1", range(1, 3)):
        apply_frame(owner, frame)
    apply_frame(owner, {"type": "error", "id": "r1", "code": "upstream_timeout", "message": "m"})
    with pytest.raises(ClientError, match=r"^m$") as failure:
        asyncio.run(stream.result())
    assert failure.value.code == "upstream_timeout"
    seen: list[int] = []

    async def read() -> None:
        async for delta in stream:
            seen.append(delta.seq)  # noqa: PERF401 - it raises midway

    with pytest.raises(ClientError):
        asyncio.run(read())
    assert seen == [1, 2]  # what arrived before the error is still handed out


def test_connection_errors_and_pings() -> None:
    owner = Owner()
    owner.start()
    apply_frame(owner, {"type": "error", "code": "rate_limited", "message": "slow down"})
    assert [e.code for e in owner.connection_errors] == ["rate_limited"]
    assert apply_frame(owner, {"type": "ping", "t": 7}) == [{"type": "pong", "t": 7}]
    assert apply_frame(owner, {"type": "later_frame", "id": "r1"}) == []
    assert apply_frame(owner, deltas("nobody", range(1, 2))[0]) == []
    assert "r1" in owner.streams


def test_manual_acks_report_only_what_the_app_rendered() -> None:
    owner = Owner()
    stream = owner.start(ack="manual")
    for frame in deltas("r1", range(1, 5)):
        apply_frame(owner, frame)

    async def read_two() -> None:
        await anext(stream)
        await anext(stream)

    asyncio.run(read_two())
    assert owner.rendered == []
    stream.rendered(99)  # beyond what arrived: capped
    assert owner.rendered == [("r1", 4)] and stream.rendered_seq == 4
    stream.rendered(2)  # never backwards
    assert owner.rendered == [("r1", 4)]


def test_cancel_is_local_and_final() -> None:
    owner = Owner()
    stream = owner.start()
    for frame in deltas("r1", range(1, 4)):
        apply_frame(owner, frame)
    stream.cancel()
    stream.cancel()
    assert owner.cancelled == ["r1"]
    assert asyncio.run(drain(stream)) == []  # what was not handed out is dropped
    assert asyncio.run(stream.result()) == Result("cancelled", None)
    stream.finish(Result("stop", None))  # a late end changes nothing
    assert asyncio.run(stream.result()).finish_reason == "cancelled"


def test_leaving_the_async_with_block_early_cancels() -> None:
    owner = Owner()
    stream = owner.start()
    apply_frame(owner, deltas("r1", range(1, 2))[0])

    async def first_only() -> Delta:
        async with stream:
            async for delta in stream:
                return delta
        raise AssertionError("no delta")

    assert asyncio.run(first_only()) == Delta(1, "t1")
    assert owner.cancelled == ["r1"] and stream.ended


def test_iteration_waits_for_deltas_that_arrive_later() -> None:
    owner = Owner()
    stream = owner.start()

    async def feed_then_read() -> list[int]:
        reader = asyncio.create_task(drain(stream))
        await asyncio.sleep(0)
        for frame in deltas("r1", range(1, 3)):
            apply_frame(owner, frame)
            await asyncio.sleep(0)
        apply_frame(owner, {"type": "done", "id": "r1", "finish_reason": "stop"})
        return await reader

    assert asyncio.run(feed_then_read()) == [1, 2]
    assert asyncio.run(stream.result()) == Result("stop", None)
