"""Ack batching: cumulative, one per stream per flush, within the message budget."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sidecar.client.acks import AckBatcher
from sidecar.client.policy import MessageBudget
from sidecar.client.stream import Stream


class NoOwner:
    def on_rendered(self, stream: Stream) -> None:
        pass

    def on_cancel(self, stream: Stream) -> None:
        pass


def rendered(stream_id: str, seq: int) -> Stream:
    stream = Stream(stream_id, {}, None, "manual", NoOwner())
    for n in range(1, seq + 1):
        stream.push(n, "x")
    stream.rendered(seq)
    return stream


def test_flush_sends_the_highest_rendered_seq_once() -> None:
    sent: list[dict[str, Any]] = []
    batcher = AckBatcher(0.1, MessageBudget(0, 0.0), lambda f: sent.append(f) or True)
    stream = rendered("r1", 3)

    async def run() -> None:
        batcher.mark(stream)
        stream.rendered_seq = 7  # rendered more before the flush
        batcher.mark(stream)
        batcher.flush()
        batcher.flush()

    asyncio.run(run())
    assert sent == [{"type": "ack", "id": "r1", "seq": 7}]
    assert stream.acked_seq == 7


def test_acks_beyond_the_budget_wait_for_the_timer() -> None:
    sent: list[dict[str, Any]] = []
    batcher = AckBatcher(
        0.05, MessageBudget(20, time.monotonic()), lambda f: sent.append(f) or True
    )
    batcher.budget.tokens = 1  # one token left now; 20 a second after that
    streams = [rendered(f"r{n}", 2) for n in range(3)]

    async def run() -> list[str]:
        for stream in streams:
            batcher.mark(stream)
        batcher.flush()
        first = [f["id"] for f in sent]
        await asyncio.sleep(0.3)
        return first

    first = asyncio.run(run())
    assert first == ["r0"]
    assert sorted(f["id"] for f in sent) == ["r0", "r1", "r2"]


def test_without_a_connection_acks_wait_for_the_next_flush() -> None:
    connected = False
    sent: list[dict[str, Any]] = []

    def send(frame: dict[str, Any]) -> bool:
        if connected:
            sent.append(frame)
        return connected

    batcher = AckBatcher(0.01, MessageBudget(0, 0.0), send)
    stream = rendered("r1", 4)

    async def run() -> None:
        nonlocal connected
        batcher.mark(stream)
        await asyncio.sleep(0.05)
        connected = True
        batcher.flush()  # as the next hello does

    asyncio.run(run())
    assert sent == [{"type": "ack", "id": "r1", "seq": 4}]


def test_forced_flush_ignores_the_budget_and_ended_streams_are_skipped() -> None:
    sent: list[dict[str, Any]] = []
    batcher = AckBatcher(0.1, MessageBudget(1, 0.0), lambda f: sent.append(f) or True)
    batcher.budget.tokens = 0
    done = rendered("r0", 2)
    done.cancel()
    live = [rendered(f"r{n}", 1) for n in range(1, 4)]

    async def run() -> None:
        for stream in [done, *live]:
            batcher.mark(stream)
        batcher.flush(force=True)

    asyncio.run(run())
    assert [f["id"] for f in sent] == ["r1", "r2", "r3"]
