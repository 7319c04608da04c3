"""Self-test for tests/support/netns.py: real TCP across a veth pair, then a
silent partition (iptables DROP inside the namespace) makes the peer half-open."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import struct
import termios

from tests.support.netns import NetNamespace
from tests.support.timeouts import scaled

CLIENT = r"""
import socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sock.settimeout(None)
def pump():
    for line in sys.stdin:
        sock.sendall(line.encode())
threading.Thread(target=pump, daemon=True).start()
print("connected", sock.getsockname()[0], flush=True)
total = 0
while True:
    data = sock.recv(65536)
    if not data:
        print("eof", flush=True)
        break
    total += len(data)
    print("got", total, flush=True)
"""


def _unacked_bytes(writer: asyncio.StreamWriter) -> int:
    """Bytes in the kernel send queue not yet acknowledged by the peer."""
    sock = writer.get_extra_info("socket")
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    value: int = struct.unpack("i", raw)[0]
    return value


async def _readline(stream: asyncio.StreamReader, timeout: float) -> bytes:
    return await asyncio.wait_for(stream.readline(), timeout=scaled(timeout))


async def _partition_scenario(ns: NetNamespace) -> None:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_connect, host=ns.host_addr, port=0)
    port = server.sockets[0].getsockname()[1]
    writers: list[asyncio.StreamWriter] = []
    clients: list[asyncio.subprocess.Process] = []

    async def start_client() -> asyncio.subprocess.Process:
        proc = await ns.spawn_python(
            "-c",
            CLIENT,
            ns.host_addr,
            str(port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        clients.append(proc)
        return proc

    try:
        client = await start_client()
        assert client.stdin is not None and client.stdout is not None
        assert await _readline(client.stdout, 10) == f"connected {ns.ns_addr}\n".encode()
        reader, writer = await asyncio.wait_for(accepted.get(), timeout=scaled(5))
        writers.append(writer)
        assert writer.get_extra_info("peername")[0] == ns.ns_addr

        # Healthy link: both directions work and everything gets acked.
        client.stdin.write(b"hello\n")
        await client.stdin.drain()
        assert await _readline(reader, 5) == b"hello\n"
        writer.write(b"x" * 1000)
        await writer.drain()
        assert await _readline(client.stdout, 5) == b"got 1000\n"
        for _ in range(int(scaled(2) / 0.01)):
            if _unacked_bytes(writer) == 0:
                break
            await asyncio.sleep(0.01)
        assert _unacked_bytes(writer) == 0

        # Silent partition.
        ns.drop_all()
        client.stdin.write(b"late\n")
        await client.stdin.drain()
        payload = 64 * 1024
        writer.write(b"y" * payload)
        await writer.drain()
        await asyncio.sleep(scaled(0.5))
        # Nothing arrived at the client, nothing was acked, nothing came back.
        assert _unacked_bytes(writer) == payload
        with contextlib.suppress(TimeoutError):
            line = await _readline(client.stdout, 0.3)
            raise AssertionError(f"client received data through the partition: {line!r}")
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(reader.read(100), timeout=scaled(0.3))
            raise AssertionError(f"server received data through the partition: {data!r}")

        # The peer process dies: its FIN/RST is dropped too -> half-open on the host.
        client.kill()
        await client.wait()
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(reader.read(100), timeout=scaled(0.5))
            raise AssertionError(f"server saw {data!r} (EOF/RST leaked through the partition)")
        assert not writer.is_closing()
        assert _unacked_bytes(writer) == payload

        # Healing the partition lets new connections through again.
        ns.restore()
        client2 = await start_client()
        assert client2.stdout is not None
        assert await _readline(client2.stdout, 10) == f"connected {ns.ns_addr}\n".encode()
        _, writer2 = await asyncio.wait_for(accepted.get(), timeout=scaled(5))
        writers.append(writer2)
    finally:
        for proc in clients:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        for w in writers:
            w.transport.abort()
        server.close()
        await server.wait_closed()


def test_veth_traffic_and_silent_partition(netns: NetNamespace) -> None:
    asyncio.run(_partition_scenario(netns))


def test_run_inside_namespace(netns: NetNamespace) -> None:
    out = netns.run("ip", "-o", "-4", "addr", "show").stdout
    assert f"inet {netns.ns_addr}/30" in out
    assert netns.host_addr not in out  # the host side is not in the namespace
    route = netns.run("ip", "-o", "route", "get", netns.host_addr).stdout
    assert f"dev {netns.ns_if}" in route
    assert f"src {netns.ns_addr}" in route
