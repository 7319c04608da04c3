"""The upstream HTTP/1.1 client against a scripted server on a loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sidecar.errors import ConfigError, UpstreamError
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.http1 import HIGH_WATER, BrokenResponse, Origin

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Server:
    """Answers each request on a connection with `script(reader, writer, request_number)`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.disconnects = 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.script(reader, writer, len(self.requests))
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.disconnects += 1
        finally:
            writer.close()


async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(SSE_HEAD + chunk(b"data: {}\n\n") + chunk(b"data: [DONE]\n\n") + chunk(b""))
    await writer.drain()


async def read_all(client: UpstreamClient, request_id: str = "r") -> tuple[bytes, bool]:
    response = await client.stream("/v1/chat/completions", {"stream": True}, request_id, {})
    data = b"".join([c async for c in response.chunks()])
    complete = response._response.complete
    response.close()
    return data, complete


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


def test_keep_alive_reuses_one_connection() -> None:
    async def main() -> None:
        server = Server(sse)
        async with server as url:
            client = UpstreamClient(url)
            await client.start()
            for _ in range(3):
                assert await read_all(client) == (b"data: {}\n\ndata: [DONE]\n\n", True)
            await client.close()
        assert server.connections == 1 and len(server.requests) == 3
        assert b"X-Request-Id: r\r\n" in server.requests[0]
        assert b"Accept-Encoding: identity\r\n" in server.requests[0]

    run(main())


def test_a_body_cut_short_hands_out_what_came_then_fails_and_is_not_reused() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(SSE_HEAD + chunk(b"data: {}\n\n"))
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = Server(cut)
        async with server as url:
            client = UpstreamClient(url)
            await client.start()
            for _ in range(2):
                response = await client.stream("/v1/completions", {}, "r", {})
                received = b""
                with pytest.raises(BrokenResponse, match="closed mid-body"):
                    async for data in response.chunks():
                        received += data
                assert received == b"data: {}\n\n" and not response._response.complete
                response.close()
            await client.close()
        assert server.connections == 2

    run(main())


def test_a_keep_alive_the_server_dropped_unanswered_is_retried_once() -> None:
    async def drop_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        if n == 2:
            writer.close()  # a keep-alive timeout racing the request: it was never processed
        else:
            await sse(reader, writer, n)

    async def main() -> None:
        server = Server(drop_second)
        async with server as url:
            client = UpstreamClient(url)
            await client.start()
            assert (await read_all(client))[1]
            assert (await read_all(client))[1]  # no error: retried on a fresh connection
            await client.close()
        assert server.connections == 2 and len(server.requests) == 3

    run(main())


def test_error_status_becomes_an_upstream_error_with_the_servers_message() -> None:
    async def fail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        body = b'{"error": {"message": "model not loaded"}}'
        status = b"503 Service Unavailable" if n == 1 else b"400 Bad Request"
        writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()

    async def main() -> None:
        async with Server(fail) as url:
            client = UpstreamClient(url)
            await client.start()
            with pytest.raises(UpstreamError) as server_side:
                await read_all(client)
            with pytest.raises(UpstreamError) as rejected:
                await read_all(client)
            await client.close()
        assert server_side.value.code == "upstream_error" and server_side.value.status == 503
        assert "model not loaded" in str(server_side.value)
        assert rejected.value.code == "upstream_rejected"

    run(main())


def test_unreachable_upstream_and_bad_url() -> None:
    async def main() -> None:
        async with Server(sse) as url:
            pass  # closed: nothing listens on that port any more
        client = UpstreamClient(url)
        await client.start()
        with pytest.raises(UpstreamError) as unreachable:
            await read_all(client)
        assert unreachable.value.code == "upstream_unavailable"

    run(main())
    with pytest.raises(ConfigError, match="--upstream"):
        UpstreamClient("ftp://example")


def test_cancelling_before_the_headers_closes_the_connection() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.read(1)  # waits until the client goes away

    async def main() -> None:
        server = Server(stall)
        async with server as url:
            client = UpstreamClient(url)
            await client.start()
            task = asyncio.ensure_future(read_all(client))
            for _ in range(100):
                if server.requests:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            for _ in range(100):
                if server.disconnects:
                    break
                await asyncio.sleep(0.01)
            await client.close()
        assert server.disconnects == 1

    run(main())


def test_a_slow_reader_pauses_the_socket_instead_of_buffering_everything_or_timing_out() -> None:
    piece = b"data: " + b"x" * 16_000 + b"\n\n"

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(SSE_HEAD)
        for _ in range(200):  # 3.2 MB, far more than the socket buffers hold
            writer.write(chunk(piece))
            await writer.drain()
        writer.write(chunk(b""))
        await writer.drain()

    async def main() -> None:
        async with Server(flood) as url:
            # A paused socket is the relay's doing, not the model server's silence.
            client = UpstreamClient(url, first_byte_timeout=0.1, idle_timeout=0.1)
            await client.start()
            response = await client.stream("/v1/completions", {}, "r", {})
            await asyncio.sleep(0.3)  # nobody reads, for three idle allowances
            assert HIGH_WATER <= len(response.take_buffered()) < HIGH_WATER + 256 * 1024
            total = sum([len(c) async for c in response.chunks()])
            assert total > 2_000_000 and response._response.complete
            response.close()
            await client.close()

    run(main())


def test_header_values_cannot_inject_lines() -> None:
    origin = Origin("http://[::1]:8080/prefix")
    head = origin.head("POST", "/v1/x", 2, {"traceparent": "ok", "X-Evil": "a\r\nHost: b"})
    assert head.startswith(b"POST /prefix/v1/x HTTP/1.1\r\nHost: [::1]:8080\r\n")
    assert b"traceparent: ok\r\n" in head and b"Evil" not in head
    assert head.endswith(b"Content-Length: 2\r\n\r\n")
