"""A model server that goes silent, answers oddly, or whose caller gives up: against a stub
upstream on a loopback socket. Timeouts fire within tolerance with the right phase, the stub
sees its connection close, nothing stays checked out, and the pool keeps working."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecar.errors import UpstreamError, UpstreamTimeout
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.http1 import BrokenResponse, Pool
from tests.support.timeouts import scaled
from tests.unit.test_upstream_http1 import SSE_HEAD, Script, Server, chunk, read_all, run, sse

ALLOWANCE = 0.3  # the timeout under test; the watchdog checks every ALLOWANCE / 4
SLACK = ALLOWANCE / 4 + 0.25  # one check interval, plus a loaded machine's scheduling delay
BODY = b"data: {}\n\ndata: [DONE]\n\n"


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + scaled(seconds)
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def silent(reader: asyncio.StreamReader) -> None:
    await reader.read(1)  # returns when the client hangs up


def first_then_sse(first: bytes) -> Script:
    """Request 1 gets `first` and then silence; later requests a whole answer."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n > 1:
            await sse(reader, writer, n)
            return
        writer.write(first)
        await writer.drain()
        await silent(reader)

    return script


def pool(client: UpstreamClient) -> Pool:
    assert client._pool is not None
    return client._pool


async def settled(client: UpstreamClient, server: Server, disconnects: int = 1) -> None:
    """The stub saw the hang-up, nothing is checked out and the watchdog stopped."""
    await until(lambda: server.disconnects == disconnects)
    await until(lambda: not pool(client).busy and pool(client)._watchdog is None)


async def time_out(client: UpstreamClient, server: Server, phase: str) -> float:
    """Seconds from the request until the `UpstreamTimeout` of `phase`; chunks before it are
    checked to have been handed out first."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = b""
    with pytest.raises(UpstreamTimeout) as caught:
        response = await client.stream("/v1/chat/completions", {}, "r", {})
        try:
            async for data in response.chunks():
                received += data
                start = loop.time() if phase == "idle" else start
        finally:
            response.close()
    elapsed = loop.time() - start
    assert caught.value.phase == phase and caught.value.code == "upstream_timeout"
    if phase == "idle":
        assert received == b"data: {}\n\n"
    return elapsed


@pytest.mark.parametrize(
    ("first", "phase"),
    [
        (b"", "first_byte"),  # queued: not even a status line
        (SSE_HEAD, "first_byte"),  # headers at once, then the queue (vLLM)
        (SSE_HEAD + chunk(b"data: {}\n\n"), "idle"),  # stuck mid-answer
    ],
    ids=["no head", "head only", "mid-body"],
)
def test_a_silent_server_times_out_with_the_phase_then_the_pool_works(
    first: bytes, phase: str
) -> None:
    async def main() -> None:
        server = Server(first_then_sse(first))
        async with server as url:
            client = UpstreamClient(url, first_byte_timeout=ALLOWANCE, idle_timeout=ALLOWANCE)
            await client.start()
            elapsed = await time_out(client, server, phase)
            assert ALLOWANCE - 0.02 <= elapsed < ALLOWANCE + scaled(SLACK)
            await settled(client, server)
            assert await read_all(client) == (BODY, True)  # on a fresh connection
            assert server.connections == 2
            await client.close()

    run(main())


def test_a_slow_stream_that_never_pauses_long_is_not_idle() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(SSE_HEAD)
        for _ in range(6):  # 0.6 s in all, twice the idle allowance
            await asyncio.sleep(0.1)
            writer.write(chunk(b"data: {}\n\n"))
        writer.write(chunk(b""))
        await writer.drain()

    async def main() -> None:
        async with Server(trickle) as url:
            client = UpstreamClient(url, first_byte_timeout=0.5, idle_timeout=ALLOWANCE)
            await client.start()
            assert await read_all(client) == (b"data: {}\n\n" * 6, True)
            await client.close()

    run(main())


def test_zero_turns_the_timeouts_and_the_watchdog_off() -> None:
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(0.4)
        await sse(reader, writer, n)

    async def main() -> None:
        async with Server(late) as url:
            client = UpstreamClient(url, first_byte_timeout=0, idle_timeout=0)
            await client.start()
            task = asyncio.ensure_future(read_all(client))
            await asyncio.sleep(0.1)
            assert pool(client).busy and pool(client)._watchdog is None
            assert await task == (BODY, True)
            await client.close()

    run(main())


def test_interim_responses_are_skipped_and_the_connection_reused() -> None:
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the answer comes later, in its own packet
        await sse(reader, writer, n)

    async def main() -> None:
        server = Server(hints)
        async with server as url:
            client = UpstreamClient(url, first_byte_timeout=ALLOWANCE)
            await client.start()
            for _ in range(3):
                assert await read_all(client) == (BODY, True)
            await client.close()
        assert server.connections == 1 and len(server.requests) == 3

    run(main())


def test_a_bad_chunk_mid_body_fails_after_the_good_bytes_and_the_pool_recovers() -> None:
    bad = SSE_HEAD + chunk(b"data: {}\n\n") + b"zz\r\nnot hex\r\n"
    for_ever = 3600.0  # only the parse error may end this stream

    async def main() -> None:
        server = Server(first_then_sse(bad))
        async with server as url:
            client = UpstreamClient(url, first_byte_timeout=for_ever, idle_timeout=for_ever)
            await client.start()
            response = await client.stream("/v1/chat/completions", {}, "r", {})
            received = b""
            with pytest.raises(BrokenResponse, match="bad HTTP response"):
                async for data in response.chunks():
                    received += data
            assert received == b"data: {}\n\n"
            response.close()
            await settled(client, server)
            assert await read_all(client) == (BODY, True)
            assert server.connections == 2
            await client.close()

    run(main())


def test_the_readiness_probe_is_under_the_same_timeouts() -> None:
    async def main() -> None:
        server = Server(first_then_sse(b""))
        async with server as url:
            client = UpstreamClient(url, first_byte_timeout=ALLOWANCE, idle_timeout=ALLOWANCE)
            await client.start()
            start = asyncio.get_running_loop().time()
            assert not await client.ready()
            assert asyncio.get_running_loop().time() - start < ALLOWANCE + scaled(SLACK)
            await settled(client, server)
            assert await client.ready()  # the stub answers request 2 with a 200
            await client.close()

    run(main())


# Cancellation anywhere leaves nothing checked out ----------------------------------------------


async def cancel_when(
    client: UpstreamClient, server: Server, reading: bool, ready: Callable[[], bool]
) -> None:
    """Start a stream (and, if `reading`, iterate its chunks without ever closing it), cancel
    it once `ready()`, then check the stub saw the hang-up and nothing stayed out."""

    async def caller() -> None:
        response = await client.stream("/v1/chat/completions", {}, "r", {})
        if reading:
            async for _data in response.chunks():
                pass

    task = asyncio.ensure_future(caller())
    await until(ready)
    await asyncio.sleep(0.05)  # the caller is now waiting inside
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settled(client, server)


@pytest.mark.parametrize(
    ("first", "reading"),
    [
        (b"", False),  # waiting for the headers
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{", False),  # reading the detail
        (SSE_HEAD + chunk(b"data: {}\n\n"), True),  # reading the body
    ],
    ids=["awaiting the head", "reading an error", "reading the body"],
)
def test_a_cancelled_caller_leaves_no_connection_out(first: bytes, reading: bool) -> None:
    async def main() -> None:
        server = Server(first_then_sse(first))
        async with server as url:
            client = UpstreamClient(url)
            await client.start()
            await cancel_when(client, server, reading, lambda: bool(server.requests))
            assert pool(client).idle == 0  # closed, not pooled
            assert await read_all(client) == (BODY, True)
            await client.close()

    run(main())


def test_an_error_status_with_a_body_cut_short_still_raises_the_status() -> None:
    async def main() -> None:
        head = b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\n"
        server = Server(first_then_sse(head))
        async with server as url:
            client = UpstreamClient(url, first_byte_timeout=ALLOWANCE)
            await client.start()
            start = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamError, match="answered 503: no detail"):
                await client.stream("/v1/chat/completions", {}, "r", {})
            assert asyncio.get_running_loop().time() - start < ALLOWANCE + scaled(SLACK)
            await settled(client, server)
            await client.close()

    run(main())
