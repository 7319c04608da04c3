"""A server edge that helps clients recover (protocol v1): every cancel gets a terminal frame, a
late cancel an answer, acks have their own budget, a drain says when to come back, and a dead
model server is reported at once by a circuit breaker instead of each stream timing out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.ledger import wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.security.helpers import sample
from tests.support.ports import free_port
from tests.support.stack import running_stack
from tests.support.timeouts import scaled


def test_cancel_is_confirmed_and_a_late_cancel_answered(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "100")
        stack.start_serve()

        async def scenario() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
            client = await Client.connect(stack.ws_url)
            assert client.hello["reconnect"] == {"base_ms": 500, "max_ms": 30000}
            await client.generate("long", chat(2000))
            while (await client.next("long"))["type"] != "delta":
                pass
            await client.send({"type": "cancel", "id": "long"})
            frames = await client.read_until_end("long")
            await client.generate("short", chat(2))
            await client.read_until_end("short")
            await client.send({"type": "cancel", "id": "short"})  # after its `done`
            late = await client.next("short")
            await client.close()
            return frames[-1], late, frames[0]

        terminal, late, _first = asyncio.run(scenario())
        assert terminal["type"] == "done" and terminal["finish_reason"] == "cancelled"
        assert late["type"] == "error" and late["code"] == "already_finished"
        rows = {r["request_id"]: r for r in wait_for_rows(stack.db_url, 2)}
        assert rows["long"]["outcome"] == "client_cancelled"
        usage = terminal["usage"]
        assert isinstance(usage, dict)
        assert usage["completion_tokens"] == rows["long"]["generated_tokens"]


def test_acking_every_delta_is_not_rate_limited(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "200")
        stack.start_serve("--max-messages-per-second", "10")

        async def ack_everything() -> tuple[int, list[str]]:
            client = await Client.connect(stack.ws_url)
            await client.generate("r", chat(400))  # ~2 s at 200 tokens/s: ~400 acks
            acks = 0
            while True:
                frame = await client.next("r")
                if frame["type"] == "delta":
                    await client.send({"type": "ack", "id": "r", "seq": frame["seq"]})
                    acks += 1
                elif frame["type"] in ("done", "error"):
                    break
            await asyncio.sleep(0.3)
            errors = []
            while not client.queue(None).empty():
                errors.append(str((await client.next(None)).get("code")))
            # Other messages are still limited: 40 pings at once pass 10/s, burst 10.
            for n in range(40):
                await client.send({"type": "ping", "t": n})
            await asyncio.sleep(0.3)
            while not client.queue(None).empty():
                errors.append(str((await client.next(None)).get("code")))
            await client.close()
            return acks, errors

        acks, errors = asyncio.run(ack_everything())
        assert acks >= 390
        assert "rate_limited" in errors  # the pings
        limited = sample(stack.metrics_text(), "sidecar_limit_hits_total", limit="message_rate")
        assert 0 < limited <= 30  # only pings were dropped, none of the ~400 acks


def test_drain_closes_with_service_restart_and_a_retry_hint(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        serve = stack.start_serve("--drain-timeout", "1")

        async def wait_for_close() -> tuple[int | None, str | None]:
            client = await Client.connect(stack.ws_url)
            serve.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(client.ws.wait_closed(), scaled(10))
            assert client.ws.close_code is not None
            return client.ws.close_code, client.ws.close_reason

        code, reason = asyncio.run(wait_for_close())
        assert code == 1012 and reason is not None and "retry_after_ms=" in reason


@pytest.mark.timeout(120)
def test_a_dead_model_server_trips_the_breaker_and_a_live_one_closes_it(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.sim_port = free_port()  # nothing listens there yet
        stack.start_serve()

        async def refused_streams(n: int) -> list[dict[str, object]]:
            client = await Client.connect(stack.ws_url)
            ends = []
            for i in range(n):
                await client.generate(f"r{i}", chat(5))
                ends.append((await client.read_until_end(f"r{i}"))[-1])
            await client.close()
            return ends

        ends = asyncio.run(refused_streams(8))
        assert all(e["code"] == "upstream_unavailable" for e in ends)
        assert "retry_after_ms" not in ends[0]  # a real connection attempt, refused
        assert all(int(str(e["retry_after_ms"])) >= 1000 for e in ends[5:])  # the breaker
        assert sample(stack.metrics_text(), "sidecar_upstream_breaker_open") == 1
        # Over HTTP the same: 503 at once, with Retry-After.
        request = urllib.request.Request(
            stack.http_url + "/v1/chat/completions",
            json.dumps(chat(3)).encode(),
            {"content-type": "application/json"},
        )
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=scaled(10))
        assert refused.value.code == 503 and int(refused.value.headers["retry-after"]) >= 1
        refused.value.close()
        assert time.monotonic() - started < 0.5


def test_readiness_reports_the_breaker_and_a_returning_server_closes_it(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.sim_port = free_port()
        stack.start_serve()

        async def one(stream_id: str) -> dict[str, object]:
            client = await Client.connect(stack.ws_url)
            await client.generate(stream_id, chat(3))
            end = (await client.read_until_end(stream_id))[-1]
            await client.close()
            return end

        for i in range(5):
            assert asyncio.run(one(f"down{i}"))["code"] == "upstream_unavailable"
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(stack.admin_url + "/readyz", timeout=5)
        assert json.loads(not_ready.value.read())["breaker"] == "open"
        not_ready.value.close()
        stack.start_sim()  # the model server comes back
        deadline = time.monotonic() + scaled(10)
        end: dict[str, object] = {}
        while time.monotonic() < deadline:
            end = asyncio.run(one("back"))
            if end["type"] == "done":
                break
            time.sleep(0.3)
        assert end["type"] == "done", end
        assert sample(stack.metrics_text(), "sidecar_upstream_breaker_open") == 0
        rows = wait_for_rows(stack.db_url, 6)
        assert sum(r["error_code"] == "upstream_unavailable" for r in rows) >= 5
