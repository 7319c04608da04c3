"""A model server that hangs (stuck NCCL, dead GPU, full queue) no longer holds clients forever:
--upstream-first-byte-timeout bounds the wait for an answer, --upstream-idle-timeout the silence
while streaming. Past either the stream ends as `timeout`, the model server's connection is
closed, and the client is told: an `error` frame, HTTP 504, or an SSE error event the official
OpenAI client raises. Both ingresses; the simulator stalls on request (`sim_fault`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.ledger import wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

NO_HEADERS = {"stall_before_first_byte": 60}
HEADERS_ONLY = {"stall_before_first_token": 60}
AFTER_FIVE = {"stall_after_tokens": 5, "stall_seconds": "forever"}


def test_stalled_model_servers_end_as_timeout_on_both_ingresses(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "100")
        stack.start_serve("--upstream-first-byte-timeout", "1", "--upstream-idle-timeout", "1")

        async def over_websocket() -> dict[str, tuple[list[dict[str, Any]], float]]:
            client = await Client.connect(stack.ws_url)
            seen = {}
            for name, fault in (("ws-no-headers", NO_HEADERS), ("ws-after-five", AFTER_FIVE)):
                started = time.monotonic()
                await client.generate(name, {**chat(200), "sim_fault": fault})
                seen[name] = (await client.read_until_end(name), time.monotonic() - started)
            await client.close()
            return seen

        ws = asyncio.run(over_websocket())
        frames, seconds = ws["ws-no-headers"]
        assert frames[-1]["code"] == "upstream_timeout" and 0.9 <= seconds < scaled(4)
        frames, seconds = ws["ws-after-five"]
        assert [f["type"] for f in frames].count("delta") == 5
        assert frames[-1]["code"] == "upstream_timeout" and 0.9 <= seconds < scaled(4)

        via = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)

        def http(fault: dict[str, Any]) -> tuple[int, Exception]:
            chunks = 0
            with pytest.raises(openai.APIError) as raised:
                for chunk in via.chat.completions.create(
                    model="sim-small",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=200,
                    stream=True,
                    extra_body={"sim_fault": fault},
                ):
                    chunks += bool(chunk.choices and chunk.choices[0].delta.content)
            return chunks, raised.value

        chunks, error = http(NO_HEADERS)  # nothing sent yet: a status the SDK raises
        assert chunks == 0 and isinstance(error, openai.APIStatusError)
        assert error.status_code == 504
        chunks, error = http(HEADERS_ONLY)  # headers sent: an error event in the stream
        assert chunks == 0 and "sent nothing" in str(error)
        chunks, error = http(AFTER_FIVE)
        assert chunks == 5 and "sent nothing" in str(error)
        via.close()

        rows = wait_for_rows(stack.db_url, 5)
        assert [(r["outcome"], r["error_code"]) for r in rows] == [
            ("timeout", "upstream_timeout")
        ] * 5
        by_tokens = sorted((r["generated_tokens"], r["delivered_tokens"]) for r in rows)
        assert by_tokens == [(0, 0), (0, 0), (0, 0), (5, 5), (5, 5)]
        deadline = time.monotonic() + scaled(5)
        while stack.sim_stats()["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = stack.sim_stats()
        assert stats["active"] == 0 and stats["aborted"] == 5  # every stalled request was closed
