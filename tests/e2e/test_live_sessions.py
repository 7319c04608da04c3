"""Who is connected right now, against a real sidecar: `GET /sessions` (filters, stuck
streams, a closed session leaving), the admin token, and `sidecar top` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.wsclient import Client, chat
from tests.support.stack import REPO, Stack, running_stack, sidecar_cmd
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = "live-view-test-token"


def sessions(stack: Stack, query: str = "", token: str | None = TOKEN) -> dict[str, Any]:
    request = urllib.request.Request(f"{stack.admin_url}/sessions?{query}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.load(response))


async def poll_until(stack: Stack, query: str, check: Any, timeout: float = 10.0) -> Any:
    """The first answer for which `check(answer)` is truthy."""
    deadline = asyncio.get_running_loop().time() + scaled(timeout)
    while True:
        answer = await asyncio.to_thread(sessions, stack, query)
        if check(answer):
            return answer
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/sessions?{query} never matched; last: {answer}")
        await asyncio.sleep(0.1)


def by_tenant(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["tenant"]: s for s in answer["sessions"]}


async def read_and_ack(client: Client, stream_id: str, stop_acking_after: int | None) -> None:
    """Read every delta; ack each one, or only the first `stop_acking_after`."""
    while True:
        frame = await client.next(stream_id, timeout=60)
        if frame["type"] in ("done", "error"):
            return
        limit = stop_acking_after
        if frame["type"] == "delta" and (limit is None or frame["seq"] <= limit):
            await client.send({"type": "ack", "id": stream_id, "seq": frame["seq"]})


async def http_stream(stack: Stack, started: asyncio.Event) -> None:
    body = {**chat(100000), "stream": True}
    headers = {"X-Sidecar-Tenant": "over-http"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.http_url}/v1/chat/completions", json=body, headers=headers) as reply,
    ):
        async for _line in reply.content:
            started.set()


def run_top(
    stack: Stack, *args: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIDECAR_ADMIN_TOKEN"}
    if token:
        env["SIDECAR_ADMIN_TOKEN"] = token
    return subprocess.run(
        sidecar_cmd("top", "--admin", stack.admin_url, *args),
        capture_output=True,
        text=True,
        timeout=scaled(30),
        env=env,
        cwd=REPO,
        check=False,
    )


def test_live_sessions_and_top(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "40")
        stack.start_serve("--heartbeat-interval", "0.2", "--admin-token", TOKEN)

        async def scenario() -> None:
            acme = await Client.connect(stack.ws_url + "?tenant=acme")
            idle = await Client.connect(stack.ws_url + "?tenant=beta")
            slow = await Client.connect(stack.ws_url + "?tenant=gamma")
            await acme.generate("r1", chat(100000, model="sim-big"))
            await slow.generate("g1", chat(100000))
            readers = [
                asyncio.create_task(read_and_ack(acme, "r1", None)),
                asyncio.create_task(read_and_ack(slow, "g1", stop_acking_after=2)),
            ]
            over_http = asyncio.Event()
            http_task = asyncio.create_task(http_stream(stack, over_http))
            await asyncio.wait_for(over_http.wait(), scaled(10))

            # RTTs arrive with the heartbeats; tokens move between two looks.
            first = await poll_until(
                stack,
                "",
                lambda a: (
                    len(a["sessions"]) == 3
                    and all(s["rtt_last_seconds"] is not None for s in a["sessions"])
                    and by_tenant(a)["acme"]["streams"][0]["generated_tokens"] > 0
                ),
            )
            acme_id = by_tenant(first)["acme"]["session_id"]
            assert acme_id == acme.hello["session"]
            moved = await poll_until(
                stack,
                "",
                lambda a: (
                    by_tenant(a)["acme"]["streams"][0]["generated_tokens"]
                    > by_tenant(first)["acme"]["streams"][0]["generated_tokens"]
                ),
            )
            (stream,) = by_tenant(moved)["acme"]["streams"]
            assert stream["id"] == "r1" and stream["model"] == "sim-big"
            assert 0 < stream["delivered_tokens"] <= stream["generated_tokens"]
            assert len(stream["trace_id"]) == 32
            assert moved["totals"]["http_streams"] == 1
            assert [h["tenant"] for h in moved["http_streams"]] == ["over-http"]
            assert 0 < by_tenant(moved)["acme"]["rtt_p50_seconds"] < 1
            assert by_tenant(moved)["acme"]["rtt_recent_seconds"]

            assert "hello there" not in json.dumps(moved)  # no prompt (nor completion) text

            # Filters.
            assert [s["tenant"] for s in sessions(stack, "tenant=beta")["sessions"]] == ["beta"]
            assert sessions(stack, "min_rtt=10")["sessions"] == []
            assert [s["tenant"] for s in sessions(stack, "model=sim-big")["sessions"]] == ["acme"]

            # The client that stopped acking is stuck once its ack stood still for 2 s.
            stuck = await poll_until(stack, "stuck=1", lambda a: a["sessions"], timeout=15)
            (gamma,) = stuck["sessions"]
            assert gamma["tenant"] == "gamma"
            assert gamma["streams"][0]["stuck"] == "not_acking"
            assert gamma["streams"][0]["acked"] == 2

            # `sidecar top` against the same sidecar, with the token from the environment.
            shown = await asyncio.to_thread(run_top, stack, "--count", "2", "--interval", "0.3")
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.count("sidecar top ·") == 2
            assert acme_id[-12:] in shown.stdout and "beta" in shown.stdout
            assert "STUCK not_acking" in shown.stdout
            assert "HTTP streams" in shown.stdout
            as_json = await asyncio.to_thread(
                run_top, stack, "--count", "1", "--format", "json", "--sort", "rtt"
            )
            assert json.loads(as_json.stdout)["totals"]["sessions"] == 3
            refused = await asyncio.to_thread(run_top, stack, "--count", "1", token=None)
            assert refused.returncode == 2
            assert refused.stderr.strip().splitlines() == [
                f"error: --admin {stack.admin_url}: this sidecar wants its admin token; "
                "pass --admin-token or set SIDECAR_ADMIN_TOKEN"
            ]

            # A closed session leaves; its stream shows among the just ended.
            await acme.close()
            gone = await poll_until(stack, "", lambda a: acme_id not in str(a["sessions"]))
            ended = [e for e in gone["ended"] if e["session_id"] == acme_id]
            assert [(e["id"], e["outcome"]) for e in ended] == [("r1", "client_gone")]
            assert ended[0]["generated_tokens"] >= ended[0]["delivered_tokens"] > 0

            http_task.cancel()
            for task in readers:
                task.cancel()
            await asyncio.gather(http_task, *readers, return_exceptions=True)
            await slow.close()
            await idle.close()

        asyncio.run(scenario())


def test_admin_token_guards_sessions_and_metrics(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        stack.start_serve(env={"SIDECAR_ADMIN_TOKEN": TOKEN, "SIDECAR_ADMIN_METRICS_OPEN": "1"})
        for wrong in (None, "not-" + TOKEN):
            with pytest.raises(urllib.error.HTTPError) as refused:
                sessions(stack, token=wrong)
            refused.value.close()
            assert refused.value.code == 401
        assert sessions(stack)["totals"]["sessions"] == 0
        assert "sidecar_sessions_active" in stack.metrics_text()  # open by option
