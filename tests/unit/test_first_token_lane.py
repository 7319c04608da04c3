"""First tokens go first: when reads for several streams arrive in the same turn of the event
loop, the stream still waiting for its first token is relayed before those already streaming
(`sidecar.upstream.http1.Lane`), and the relay gives up that priority once its first token is
written (`pump(..., first_token_relayed=...)`)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sidecar.relay.pump import pump
from sidecar.upstream.http1 import Lane, Response
from tests.unit.test_accounting import account
from tests.unit.test_ws_sink import Observer, _chunks, _event


def _response(loop: asyncio.AbstractEventLoop, lane: Lane, urgent: bool) -> Response:
    conn = SimpleNamespace(loop=loop, pool=SimpleNamespace(lane=lane))
    response = Response(conn)  # type: ignore[arg-type]
    response.urgent = urgent
    return response


async def _resume_order(arrivals: list[str], urgent: set[str]) -> list[tuple[str, bytes]]:
    """Readers for every stream wait; all `arrivals` reach their responses in one callback
    (one turn of the loop, as in one `epoll` wake-up); returns the order readers resumed in."""
    loop = asyncio.get_running_loop()
    lane = Lane(loop)
    responses = {name: _response(loop, lane, name in urgent) for name in arrivals}
    resumed: list[tuple[str, bytes]] = []

    async def reader(name: str) -> None:
        async for data in responses[name].chunks():
            resumed.append((name, data))
            return

    tasks = [loop.create_task(reader(name)) for name in arrivals]
    await asyncio.sleep(0)  # every reader is now waiting for its first read

    def one_turn() -> None:
        for name in arrivals:
            responses[name]._body(name.encode())

    loop.call_soon(one_turn)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    return resumed


def test_a_stream_waiting_for_its_first_token_is_woken_before_streaming_ones() -> None:
    resumed = asyncio.run(_resume_order(["a", "b", "new", "c"], urgent={"new"}))
    assert resumed == [("new", b"new"), ("a", b"a"), ("b", b"b"), ("c", b"c")]


def test_without_first_tokens_waiting_reads_keep_their_arrival_order() -> None:
    assert [n for n, _ in asyncio.run(_resume_order(["a", "b", "c"], urgent=set()))] == [
        "a",
        "b",
        "c",
    ]
    assert [n for n, _ in asyncio.run(_resume_order(["x", "y"], urgent={"x", "y"}))] == ["x", "y"]


def test_a_deferred_read_followed_by_the_end_of_the_body_loses_nothing() -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        response = _response(loop, Lane(loop), urgent=False)

        def one_turn() -> None:
            response._body(b"one")
            response._body(b"two")
            response._end(True)

        loop.call_soon(one_turn)
        return [data async for data in response.chunks()]

    assert b"".join(asyncio.run(main())) == b"onetwo"


class _Sink:
    def __init__(self) -> None:
        self.flushes = 0

    def delta(self, seq: int, text: str) -> None:
        pass

    def passthrough(self, payload: str, usage_only: bool) -> None:
        pass

    async def flush(self, finished: bool = False) -> None:
        self.flushes += 1


def test_pump_gives_up_priority_once_after_the_first_token_is_written() -> None:
    sink = _Sink()
    calls: list[int] = []
    reads = [b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n', _event("a"), _event("b")]
    reads.append(b"data: [DONE]\n\n")
    relayed = asyncio.run(
        pump(
            _chunks(reads),
            account(request_id="r1", t_start=0.0),
            sink,
            Observer(),
            lambda: 1.0,
            first_token_relayed=lambda: calls.append(sink.flushes),
        )
    )
    assert relayed
    assert calls == [2]  # once, after the write of the read carrying the first token
