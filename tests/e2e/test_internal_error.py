"""A bug in the sidecar is never billed to the client: a stream that hits an unexpected exception
ends as `internal_error` at once (error frame or 500), is logged with its id and counted, its
upstream request is closed, and the connection's other streams go on. Both ingresses.

The exception comes from a failpoint (sidecar.relay.failpoints), armed for one model name.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import pytest

from tests.e2e.ledger import wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

FAILPOINT = {"SIDECAR_FAILPOINTS": "stream_opened=buggy-model"}


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_internal_error_on_both_ingresses(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "200")
        serve = stack.start_serve(env=FAILPOINT)

        async def over_websocket() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
            client = await Client.connect(stack.ws_url)
            await client.generate("ok", chat(20))
            await client.generate("bad", chat(2000, model="buggy-model"))
            bad = await client.read_until_end("bad")
            ok = await client.read_until_end("ok")  # the same connection carries on
            await client.close()
            return bad, ok

        bad, ok = asyncio.run(over_websocket())
        assert bad[-1]["type"] == "error" and bad[-1]["code"] == "internal_error"
        assert ok[-1]["type"] == "done"

        via = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as raised:
            list(
                via.chat.completions.create(
                    model="buggy-model",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=2000,
                    stream=True,
                )
            )
        assert raised.value.status_code == 500
        via.close()

        rows = wait_for_rows(stack.db_url, 3)
        failed = [r for r in rows if r["model"] == "buggy-model"]
        assert sorted(r["ingress"] for r in failed) == ["http", "ws"]
        for row in failed:  # ended at once, as the sidecar's fault: never client_gone
            assert row["outcome"] == "internal_error" and row["error_code"] == "internal_error"
            assert row["duration_s"] < 2
        assert [r["outcome"] for r in rows if r["model"] != "buggy-model"] == ["completed"]
        assert _metric(stack.metrics_text(), "sidecar_internal_errors_total") == 2
        deadline = time.monotonic() + scaled(5)
        while stack.sim_stats()["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.sim_stats()["active"] == 0  # the model server was told to stop
        log = serve.output()
        for row in failed:
            assert f"stream {row['id']} ended by an internal error" in log
