"""A bounded fuzz run against a real `sidecar serve` (loopback only).

Thousands of malformed, truncated, oversized and random frames from many connections, plus raw
TCP garbage and cut handshakes. Afterwards the server is alive, serves a normal client
correctly, its RSS is back within 10% of the warmed-up baseline, and every ledger row is sane.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e.ledger import session_rows, stream_rows
from tests.e2e.wsclient import Client, chat
from tests.support.stack import Stack, running_stack
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e

CONNECTIONS = 50
FRAMES_PER_CONNECTION = 200  # 10,000 frames a round
MAX_FRAME = 64 * 1024
OUTCOMES = {"completed", "client_gone", "client_cancelled", "client_too_slow", "upstream_error"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fuzz_frame(rng: random.Random) -> str | bytes:
    good = json.dumps(
        {"type": "generate", "id": f"g{rng.randrange(1000)}", "body": chat(rng.randrange(1, 4))}
    )
    pick = rng.randrange(10)
    if pick == 0:
        return rng.randbytes(rng.randrange(0, 300))  # binary frame
    if pick == 1:
        return good[: rng.randrange(len(good))]  # truncated JSON
    if pick == 2:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(50)))
    if pick == 3:
        return good if rng.random() < 0.5 else good.replace('"generate"', '"teleport"')
    if pick == 4:
        kind = rng.choice(["cancel", "ack", "resume", "ping", "pong", "generate"])
        noise = rng.choice([None, -1, 2**80, "x" * 300, [], {}, True, 1.5])
        return json.dumps({"type": kind, "id": noise, "seq": noise, "body": noise, "t": noise})
    if pick == 5:
        return "[" * rng.randrange(1, 5000)
    if pick == 6:
        body = {"messages": rng.choice([[], [{}], "x", [{"content": 5}]]), "max_tokens": 1}
        return json.dumps({"type": "generate", "id": "m", "body": body, "path": rng.choice(
            ["/v1/chat/completions", "/v1/completions", "/etc/passwd", 7]
        )})  # fmt: skip
    if pick == 7:
        return json.dumps({"type": "ack", "id": "g1", "seq": rng.randrange(-5, 10**6)})
    if pick == 8:
        return "\x00" * rng.randrange(100)
    return json.dumps(rng.choice([1, "s", None, [1, 2], {"type": None}]))


async def _drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def fuzz_connection(url: str, seed: int) -> int:
    rng = random.Random(seed)
    sent = 0
    while sent < FRAMES_PER_CONNECTION:
        try:
            async with connect(
                url, max_size=None, compression=None, open_timeout=10, close_timeout=0.5
            ) as ws:
                reader = asyncio.create_task(_drain(ws))
                while sent < FRAMES_PER_CONNECTION:
                    sent += 1
                    if rng.random() < 0.01:
                        await ws.send("x" * (MAX_FRAME + rng.randrange(1, 5000)))  # → 1009
                        break
                    await ws.send(fuzz_frame(rng))
                    if sent % 10 == 0:
                        await asyncio.sleep(0)
                if rng.random() < 0.5:
                    ws.transport.abort()  # vanish without a close
            # Reading went on through the close handshake (an unread queue would stall it).
            reader.cancel()
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
            continue
    return sent


async def raw_garbage(host: str, port: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5):
        with contextlib.suppress(OSError, TimeoutError):
            _, writer = await asyncio.open_connection(host, port)
            choice = rng.randrange(3)
            if choice == 0:
                writer.write(rng.randbytes(rng.randrange(1, 2000)))
            elif choice == 1:  # a cut upgrade request
                writer.write(b"GET /v1/stream HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Up")
            else:
                writer.write(
                    b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + rng.randbytes(500)
                )
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.transport.abort()


async def fuzz_round(stack: Stack, seed: int) -> int:
    jobs = [fuzz_connection(stack.ws_url, seed * 1000 + i) for i in range(CONNECTIONS)]
    jobs += [raw_garbage("127.0.0.1", stack.port, seed * 1000 + i) for i in range(5)]
    results = await asyncio.wait_for(asyncio.gather(*jobs), scaled(60))
    return sum(r for r in results if isinstance(r, int))


async def normal_client(url: str) -> list[dict[str, Any]]:
    client = await Client.connect(url)
    await client.generate("normal", chat(12))
    frames = await client.read_until_end("normal")
    await client.close()
    return frames


def settle(stack: Stack) -> None:
    """Wait until nothing runs: no session open, every started stream finished."""
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        text = stack.metrics_text()
        active = [ln for ln in text.splitlines() if ln.startswith("sidecar_sessions_active ")]
        if active and float(active[0].split()[1]) == 0:
            return
        time.sleep(0.2)
    raise AssertionError("sessions did not end")


def test_fuzz_run_leaves_the_server_healthy(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.005", "--tokens-per-second", "2000")
        serve = stack.start_serve(
            "--max-frame-bytes", str(MAX_FRAME),
            "--max-messages-per-second", "2000",
            "--heartbeat-interval", "2",
            "--heartbeat-timeout", "2",
        )  # fmt: skip
        pid = serve.popen.pid
        started = time.monotonic()
        # Warm-up: one round, so that the baseline includes what any run allocates once.
        asyncio.run(fuzz_round(stack, seed=1))
        settle(stack)
        baseline = rss_kib(pid)
        sent = asyncio.run(fuzz_round(stack, seed=2))
        sent += asyncio.run(fuzz_round(stack, seed=3))
        assert sent >= 2 * CONNECTIONS * FRAMES_PER_CONNECTION
        settle(stack)
        assert serve.popen.poll() is None, serve.output()
        frames = asyncio.run(normal_client(stack.ws_url))
        assert frames[0]["type"] == "start" and frames[-1]["type"] == "done"
        assert [f["seq"] for f in frames if f["type"] == "delta"] == list(range(1, 13))
        deadline = time.monotonic() + scaled(10)
        while (after := rss_kib(pid)) > baseline * 1.10 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert after <= baseline * 1.10, f"RSS {baseline} KiB → {after} KiB"
        assert time.monotonic() - started < scaled(75)

        deadline = time.monotonic() + scaled(10)
        while any(r["outcome"] is None for r in stream_rows(stack.db_url)):
            assert time.monotonic() < deadline, "streams left running"
            time.sleep(0.2)
        rows = stream_rows(stack.db_url)
        assert len(rows) > 50
        for row in rows:
            assert row["outcome"] in OUTCOMES, row
            assert 0 <= row["delivered_tokens"] <= row["generated_tokens"], row
            assert row["wasted_tokens"] == row["generated_tokens"] - row["delivered_tokens"]
            assert row["prompt_tokens"] >= 0 and row["tenant"] and row["ended_at"] is not None
            assert len(row["request_id"]) <= 128
        # Rows reach the ledger in batches: the last session's end row may still be queued.
        deadline = time.monotonic() + scaled(10)
        while any(s["ended_at"] is None for s in session_rows(stack.db_url)):
            assert time.monotonic() < deadline, "sessions left open in the ledger"
            time.sleep(0.2)
        sessions = session_rows(stack.db_url)
        assert len(sessions) > 3 * CONNECTIONS  # every fuzz connection reached a session
        assert "Traceback" not in serve.output(), serve.output()[-3000:]
