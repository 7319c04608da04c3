"""The Python client (sidecar/client) against a real `sidecar serve` and `sidecar simulate`:
answers end to end, a network cut resumed exactly once, a lost session, cancel accounted as
what was rendered, acks within the rate limit, credentials, and an unreachable sidecar."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.client import Backoff, ClientError, Result, Stream, connect
from tests.e2e.ledger import session_rows, wait_for_rows
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack, sidecar_cmd
from tests.support.tcpcut import CuttableProxy
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

GRACE = ("--on-disconnect", "grace", "--resume-grace", "10")


def chat(max_tokens: int) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens}  # fmt: skip


async def read_all(
    stream: Stream, cut_at: int = 0, proxy: CuttableProxy | None = None
) -> list[int]:
    seqs = []
    async with asyncio.timeout(scaled(20)):
        async for delta in stream:
            seqs.append(delta.seq)
            if delta.seq == cut_at and proxy is not None:
                proxy.cut()  # the network drops mid-answer; the sidecar keeps running
    return seqs


def test_two_answers_share_one_connection(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "200")
        stack.start_serve()

        async def scenario() -> tuple[list[list[int]], list[Result], str | None]:
            async with connect(stack.ws_url, tenant="py") as client:
                streams = [client.generate(chat(30)), client.generate(chat(40))]
                seqs = await asyncio.gather(*(read_all(s) for s in streams))
                return seqs, [await s.result() for s in streams], client.session

        seqs, results, session = asyncio.run(scenario())
        assert seqs == [list(range(1, 31)), list(range(1, 41))]
        assert [r.usage.completion_tokens if r.usage else None for r in results] == [30, 40]
        rows = wait_for_rows(stack.db_url, 2)
        assert {r["session_id"] for r in rows} == {session}
        assert all(r["outcome"] == "completed" and r["tenant"] == "py" for r in rows)


def test_a_cut_mid_answer_is_resumed_exactly_once(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "100")
        stack.start_serve(*GRACE)

        async def scenario() -> tuple[list[int], int]:
            async with CuttableProxy(stack.port) as proxy:
                url = f"ws://127.0.0.1:{proxy.port}/v1/stream"
                async with connect(url, tenant="py") as client:
                    stream = client.generate(chat(150))
                    seqs = await read_all(stream, cut_at=20, proxy=proxy)
                    assert (await stream.result()).finish_reason == "length"
                    return seqs, proxy.accepted

        seqs, connections = asyncio.run(scenario())
        assert connections == 2
        assert seqs == list(range(1, 151))  # every delta exactly once, in order
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "completed"
        assert row["generated_tokens"] == row["delivered_tokens"] == 150
        assert row["wasted_tokens"] == 0
        assert len(session_rows(stack.db_url)) == 1


def test_without_resume_grace_a_cut_answer_fails_with_resume_expired(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "100")
        stack.start_serve()

        async def scenario() -> tuple[str, list[int], str]:
            async with CuttableProxy(stack.port) as proxy:
                url = f"ws://127.0.0.1:{proxy.port}/v1/stream"
                async with connect(url) as client:
                    stream = client.generate(chat(1000))
                    with pytest.raises(ClientError) as failure:
                        await read_all(stream, cut_at=5, proxy=proxy)
                    after = client.generate(chat(3))  # the client itself carries on
                    return failure.value.code, await read_all(after), client.state

        code, after, state = asyncio.run(scenario())
        assert code == "resume_expired"
        assert after == [1, 2, 3] and state == "open"
        rows = {r["request_id"]: r for r in wait_for_rows(stack.db_url, 2)}
        assert rows["r1"]["outcome"] == "client_gone"


def test_cancel_is_accounted_as_what_was_rendered(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "100")
        stack.start_serve()

        async def scenario() -> tuple[int, Result]:
            async with connect(stack.ws_url) as client:
                stream = client.generate(chat(100_000))
                rendered = 0
                async for delta in stream:
                    rendered = delta.seq
                    if rendered == 12:
                        await asyncio.sleep(scaled(0.3))  # more arrives, unread
                        stream.cancel()
                return rendered, await stream.result()

        rendered, result = asyncio.run(scenario())
        assert rendered == 12 and result == Result("cancelled", None)
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "client_cancelled"
        assert row["delivered_tokens"] == 12 < row["generated_tokens"] < 1000


def test_acks_of_many_streams_stay_within_the_rate_limit(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "100")
        stack.start_serve("--max-messages-per-second", "10")

        async def scenario() -> tuple[list[list[int]], list[str]]:
            async with connect(stack.ws_url, max_messages_per_second=5) as client:
                streams = [client.generate(chat(100)) for _ in range(8)]
                seqs = await asyncio.gather(*(read_all(s) for s in streams))
                return seqs, [e.code for e in client.connection_errors]

        seqs, errors = asyncio.run(scenario())
        assert seqs == [list(range(1, 101))] * 8
        assert errors == []  # no rate_limited: nothing was dropped
        assert 'sidecar_limit_hits_total{limit="message_rate"} 0.0' in stack.metrics_text()


def test_a_refused_credential_fails_at_once_with_the_sidecars_reason(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        created = subprocess.run(
            sidecar_cmd("keys", "create", "--tenant", "acme", "--db", stack.db_url,
                        "--format", "json"),
            capture_output=True, check=True, text=True,
        )  # fmt: skip
        key = json.loads(created.stdout)["key"]
        stack.start_serve("--auth", "apikey")
        asyncio.run(_refused(stack))

        async def with_key() -> str:
            async with connect(stack.ws_url, token=lambda: key) as client:
                return str(await read_all(client.generate(chat(2))))

        assert asyncio.run(with_key()) == "[1, 2]"
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["tenant"] == "acme"


async def _refused(stack: Stack) -> None:
    with pytest.raises(ClientError) as failure:
        await connect(stack.ws_url, token="sk_sc_wrong", backoff=Backoff(max_attempts=50))
    assert failure.value.code == "refused"
    assert "401" in str(failure.value)


def test_an_unreachable_sidecar_fails_after_the_last_attempt() -> None:
    async def scenario() -> ClientError:
        url = f"ws://127.0.0.1:{free_port()}/v1/stream"
        with pytest.raises(ClientError) as failure:
            await connect(url, backoff=Backoff(base=0.01, cap=0.02, max_attempts=2))
        return failure.value

    error = asyncio.run(scenario())
    assert error.code == "unreachable"
    assert "after 3 attempts" in str(error)
