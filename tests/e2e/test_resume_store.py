"""`serve --resume-store redis://...`: two sidecars behind one (imaginary) load balancer share
parked sessions through a real `redis-server`; a client cut off from one resumes on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.ledger import wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.support.ports import free_port
from tests.support.redis import RedisServer, running_redis
from tests.support.stack import Stack, running_stack, sidecar_cmd
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@contextlib.contextmanager
def replicas(
    tmp: Path, redis_url: str, rate: str, grace: str, *extra: str
) -> Iterator[tuple[Stack, Stack]]:
    """Replicas A and B beside one simulator (`rate` tokens/s), sharing the ledger and Redis."""
    args = ("--on-disconnect", "grace", "--resume-grace", grace, "--resume-store", redis_url)
    args += extra
    with running_stack(tmp) as a:
        a.start_sim("--ttft", "0.01", "--tokens-per-second", rate)
        a.start_serve(*args)
        b = Stack(a.tmp, a.db_url, sim_port=a.sim_port)
        b.start_serve(*args, name="serve-b")
        a.processes.append(b.processes[0])  # stopped with A's stack
        yield a, b


async def _cut_after(client: Client, stream_id: str, deltas: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < deltas:
        frame = await client.next(stream_id)
        if frame["type"] == "delta":
            seqs.append(int(frame["seq"]))
    client.abort()  # the network drops mid-answer
    return seqs


def test_a_stream_cut_on_one_replica_resumes_on_another_exactly_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with replicas(tmp_path, redis_server.url, "100", "10") as (a, b):

        async def cut_on_a_resume_on_b() -> tuple[list[int], dict[str, object], str, str]:
            client = await Client.connect(a.ws_url)
            await client.generate("r", chat(150))
            seqs = await _cut_after(client, "r", 20)
            await asyncio.sleep(0.5)  # generation goes on at A meanwhile
            token = client.hello["resume_token"]
            other_tenant = await Client.connect(  # a token is only good for its own tenant
                f"{b.ws_url}?resume_token={token}",
                additional_headers={"X-Sidecar-Tenant": "someone-else"},
            )
            assert (await other_tenant.next(None))["code"] == "resume_expired"
            assert other_tenant.hello["session"] != client.hello["session"]
            await other_tenant.close()
            again = await Client.connect(f"{b.ws_url}?resume_token={token}")
            await again.send({"type": "resume", "id": "r", "after_seq": seqs[-1]})
            frames = await again.read_until_end("r")
            seqs.extend(int(f["seq"]) for f in frames if f["type"] == "delta")
            await again.close()
            return seqs, frames[-1], client.hello["session"], again.hello["session"]

        seqs, done, first, second = asyncio.run(cut_on_a_resume_on_b())
        assert second == first  # the same session, continued on B
        assert seqs == list(range(1, 151))  # every delta exactly once, in order
        assert done["type"] == "done" and done["usage"] == {  # the frame A made
            "prompt_tokens": 3,
            "completion_tokens": 150,
        }
        (row,) = wait_for_rows(a.db_url, 1)  # one row, written by A, which owned the upstream
        assert row["outcome"] == "completed"
        assert row["generated_tokens"] == 150 and row["delivered_tokens"] == 150
        assert row["wasted_tokens"] == 0
        assert a.sim_stats()["requests"] == 1  # generated once, not twice


def test_a_cancel_on_the_other_replica_stops_the_owner_upstream(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with replicas(tmp_path, redis_server.url, "50", "10") as (a, b):

        async def run() -> int:
            client = await Client.connect(a.ws_url)
            await client.generate("r", chat(100_000))
            seqs = await _cut_after(client, "r", 5)
            token = client.hello["resume_token"]
            again = await Client.connect(f"{b.ws_url}?resume_token={token}")
            await again.send({"type": "resume", "id": "r", "after_seq": seqs[-1]})
            resumed = 0
            while resumed < 10:
                resumed += (await again.next("r"))["type"] == "delta"
            await again.send({"type": "cancel", "id": "r"})
            await asyncio.sleep(0.5)
            await again.close()
            return seqs[-1] + resumed

        delivered = asyncio.run(run())
        (row,) = wait_for_rows(a.db_url, 1)
        assert row["outcome"] == "client_cancelled"
        assert row["generated_tokens"] < 1000  # stopped, not run for the whole window
        assert row["delivered_tokens"] >= delivered  # B's deliveries count, through A's row


def test_the_owner_draining_ends_the_followed_stream_for_its_client(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with replicas(tmp_path, redis_server.url, "50", "10", "--drain-timeout", "1") as (a, b):

        async def run() -> tuple[int, dict[str, object], float]:
            client = await Client.connect(a.ws_url)
            await client.generate("r", chat(100_000))
            seqs = await _cut_after(client, "r", 3)
            again = await Client.connect(f"{b.ws_url}?resume_token={client.hello['resume_token']}")
            await again.send({"type": "resume", "id": "r", "after_seq": seqs[-1]})
            await again.next("r")
            assert a.serve is not None
            a.serve.popen.send_signal(signal.SIGTERM)
            started, resumed = time.monotonic(), 1
            frame = await again.next("r")
            while frame["type"] == "delta":  # the drain lets it run on for a second
                resumed += 1
                frame = await again.next("r")
            await again.close()
            return resumed, frame, time.monotonic() - started

        resumed, frame, waited = asyncio.run(run())
        assert frame["type"] == "error" and frame["code"] == "resume_expired"
        assert resumed > 10  # the drain let it run on for its second
        assert waited < scaled(2.9)  # the owner's end, not its alive key's 3 s expiry
        (row,) = wait_for_rows(a.db_url, 1)
        assert row["outcome"] == "client_gone"


def test_redis_restarted_mid_grace_streams_end_as_client_gone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with replicas(tmp_path, redis_server.url, "50", "2") as (a, b):

        async def run() -> tuple[dict[str, object], dict[str, object], bool]:
            # `parked`: cut while nobody follows it; `followed`: resumed on B, then Redis goes.
            client = await Client.connect(a.ws_url)
            await client.generate("parked", chat(100_000))
            await client.generate("followed", chat(100_000))
            seqs = await _cut_after(client, "followed", 3)
            token = client.hello["resume_token"]
            again = await Client.connect(f"{b.ws_url}?resume_token={token}")
            await again.send({"type": "resume", "id": "followed", "after_seq": seqs[-1]})
            await again.next("followed")
            redis_server.stop()
            redis_server.start()  # empty: it kept nothing
            frame = await again.next("followed", timeout=10)
            while frame["type"] == "delta":
                frame = await again.next("followed", timeout=10)
            await again.close()
            late = await Client.connect(f"{b.ws_url}?resume_token={token}")
            refused = await late.next(None)
            await late.close()
            return frame, refused, late.hello["session"] == client.hello["session"]

        started = time.monotonic()
        frame, refused, same_session = asyncio.run(run())
        assert frame["type"] == "error" and frame["code"] == "resume_expired"
        assert refused["code"] == "resume_expired" and not same_session  # B cannot find it
        rows = wait_for_rows(a.db_url, 2, timeout=15)
        assert sorted(r["outcome"] for r in rows) == ["client_gone", "client_gone"]
        assert time.monotonic() - started < scaled(30)  # nothing hung


def test_redis_unreachable_at_start_is_one_clear_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = subprocess.run(
        sidecar_cmd(
            "serve",
            "--upstream",
            "http://127.0.0.1:9",
            "--db",
            f"sqlite:///{tmp_path}/l.db",
            "--migrate",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
            "--spool-dir",
            str(tmp_path),
            "--on-disconnect",
            "grace",
            "--resume-store",
            url,
        ),
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"--resume-store {url}: cannot connect" in line and "leave --resume-store out" in line
