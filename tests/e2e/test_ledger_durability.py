"""The ledger survives what production throws at it: SIGKILL of the sidecar, and a database
outage while streams run (DESIGN §5). Real processes, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ledger import stream_rows
from tests.e2e.wsclient import Client, chat
from tests.support.postgres import PostgresCluster
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_sigkill_leaves_no_started_stream_unaccounted(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "50")
        serve = stack.start_serve("--instance-id", "crash-test")

        async def stream_then_kill() -> None:
            clients = [await Client.connect(stack.ws_url) for _ in range(6)]
            for i, client in enumerate(clients):
                await client.generate(f"long{i}", chat(2000))
            for i, client in enumerate(clients):
                await client.next(f"long{i}")  # start
            await asyncio.sleep(2.5)  # a couple of checkpoints go by
            serve.stop(signal.SIGKILL)
            for client in clients:
                client.abort()

        asyncio.run(stream_then_kill())
        deadline = time.monotonic() + scaled(5)
        while stack.sim_stats()["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        upstream = stack.sim_stats()["by_request"]

        before = stream_rows(stack.db_url)
        assert len(before) == 6 and all(r["outcome"] is None for r in before)
        restarted = stack.start_serve("--instance-id", "crash-test")  # closes what was left
        rows = stream_rows(stack.db_url)
        assert len(rows) == 6
        for row in rows:
            # Failed once in ~40 runs when the restart was only waited for by a TCP probe, which
            # the listening socket answers before this recovery runs (Stack._wait_healthy).
            seen = (row["id"], row["outcome"], row["ended_at"], row["generated_tokens"])
            assert row["outcome"] == "interrupted" and row["ended_at"] is not None, (
                f"{seen}; before restart: {[(r['id'], r['outcome']) for r in before]}; "
                f"spool: {sorted(p.name for p in tmp_path.glob('*spool*'))}; "
                f"restarted sidecar's log: {restarted.output()[-800:]}"
            )
            generated = upstream[row["id"]]["generated"]
            # Checkpoints come every second: at most ~1 s of tokens (50/s) behind the server.
            assert 0 < row["generated_tokens"] <= generated <= row["generated_tokens"] + 60


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_moments_after_start_and_done_loses_no_row(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """F5: rows reach the crash journal before the client sees `start` (or the HTTP headers)
    and before `done`: a SIGKILL a few milliseconds later loses none, on both ingresses and
    both databases, and a finished stream keeps its final row instead of becoming
    `interrupted` with 0 tokens. Start rows of short streams live only in the journal until
    the restart replays them."""
    url = None
    if database == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.fresh_database("crash_now")
    with running_stack(tmp_path, url) as stack:
        stack.start_sim("--tokens-per-second", "100")
        serve = stack.start_serve("--instance-id", "crash-now")
        http = f"127.0.0.1:{stack.port}"

        async def http_stream(max_tokens: int, until_end: bool) -> asyncio.StreamWriter:
            reader, writer = await asyncio.open_connection(*http.split(":"))
            body = json.dumps({**chat(max_tokens), "stream": True}).encode()
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            data = b""
            while b"\r\n\r\n" not in data or (until_end and b"[DONE]" not in data):
                chunk = await reader.read(65536)
                assert chunk, data
                data += chunk
            return writer  # left open: the client is still there when the sidecar dies

        async def ws_stream(client: Client, stream_id: str, max_tokens: int) -> None:
            await client.generate(stream_id, chat(max_tokens))
            if max_tokens > 100:
                assert (await client.next(stream_id))["type"] == "start"
            else:
                assert (await client.read_until_end(stream_id))[-1]["type"] == "done"

        async def reach_then_kill() -> None:
            clients = [await Client.connect(stack.ws_url) for _ in range(4)]
            reached = await asyncio.gather(
                *(ws_stream(c, "short", 3) for c in clients[:2]),
                *(ws_stream(c, "long", 2000) for c in clients[2:]),
                *(http_stream(3, True) for _ in range(2)),
                *(http_stream(2000, False) for _ in range(2)),
            )
            serve.stop(signal.SIGKILL)  # milliseconds after the last start / done
            for client in clients:
                client.abort()
            for writer in reached:
                if isinstance(writer, asyncio.StreamWriter):
                    writer.transport.abort()

        asyncio.run(reach_then_kill())
        stack.start_serve("--instance-id", "crash-now")
        rows = stream_rows(stack.db_url)
        seen = sorted((r["ingress"], r["outcome"], r["generated_tokens"]) for r in rows)
        assert len(rows) == 8, seen
        for row in rows:
            if row["outcome"] == "completed":
                assert row["generated_tokens"] == row["delivered_tokens"] == 3
            else:
                assert row["outcome"] == "interrupted", seen
        assert sorted(r["outcome"] for r in rows) == ["completed"] * 4 + ["interrupted"] * 4
        # The killed run's journal was absorbed; the new run's segment holds only its own rows.
        assert len(list(tmp_path.glob("*.journal.*"))) == 1


async def _user(
    url: str, user: int, until: float, ttfts: list[tuple[float, float]], done: list[str]
) -> None:
    client = await Client.connect(url)
    n = 0
    while time.monotonic() < until:
        n += 1
        request_id = f"u{user}-{n}"
        sent = time.monotonic()
        await client.generate(request_id, chat(5))
        first = await client.next(request_id)
        while first["type"] == "start":
            first = await client.next(request_id)
        ttfts.append((sent, time.monotonic() - sent))
        frames = await client.read_until_end(request_id)
        assert frames[-1]["type"] == "done"
        done.append(request_id)
        await asyncio.sleep(0.1)
    await client.close()


def test_database_outage_neither_slows_streams_nor_loses_rows(
    tmp_path: Path, postgres_cluster: PostgresCluster
) -> None:
    url = postgres_cluster.fresh_database("outage")
    with running_stack(tmp_path, url) as stack:
        stack.start_sim("--ttft", "0.02", "--tokens-per-second", "200")
        stack.start_serve()
        ttfts: list[tuple[float, float]] = []
        done: list[str] = []
        phases: dict[str, float] = {}

        async def scenario() -> None:
            start = time.monotonic()
            until = start + scaled(8 + 30 + 8)
            users = [
                asyncio.create_task(_user(stack.ws_url, u, until, ttfts, done)) for u in range(4)
            ]
            await asyncio.sleep(scaled(8))
            phases["down"] = time.monotonic()
            # "fast": the test cluster runs with synchronous_commit=off, which an immediate
            # stop would turn into lost commits; production runs with it on.
            await asyncio.to_thread(postgres_cluster.stop, "fast")
            await asyncio.sleep(scaled(30))
            await asyncio.to_thread(postgres_cluster.start)
            phases["up"] = time.monotonic()
            await asyncio.gather(*users)

        asyncio.run(scenario())
        metrics = stack.metrics_text()
        deadline = time.monotonic() + scaled(20)
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = [r for r in stream_rows(url) if r["outcome"] is not None]
            if len(rows) >= len(done):
                break
            time.sleep(0.25)

    errors = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("sidecar_ledger_write_errors_total")
    )
    assert errors >= 1  # the outage was seen and counted
    before = [t for sent, t in ttfts if sent < phases["down"]]
    during = [t for sent, t in ttfts if phases["down"] + 1 < sent < phases["up"]]
    assert len(before) > 20 and len(during) > 100
    # Streams are not slowed while the database is down: same median within noise.
    assert statistics.median(during) < statistics.median(before) * 1.5 + 0.01
    # Exactly one row per stream: none lost, none doubled.
    request_ids = sorted(r["request_id"] for r in rows)
    assert request_ids == sorted(done)
    assert all(r["outcome"] == "completed" for r in rows)
