"""Auth off (the default): anonymous clients choose their tenant; the limits still apply.
And the handshake timeout drops a client that trickles its upgrade request."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.wsclient import Client, chat
from tests.security.helpers import rows_until, sample
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e


def test_anonymous_by_default_and_slowloris_dropped(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "400")
        serve = stack.start_serve("--handshake-timeout", "0.5")

        slow = socket.create_connection(("127.0.0.1", stack.port), timeout=scaled(5))
        slow.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n")  # and never finishes
        started = time.monotonic()

        async def run() -> None:
            client = await Client.connect(
                stack.ws_url, additional_headers={"X-Sidecar-Tenant": "t1"}
            )
            await client.generate("anon", chat(3))
            assert (await client.read_until_end("anon"))[-1]["type"] == "done"
            await client.close()

        asyncio.run(run())
        slow.settimeout(scaled(5))
        assert slow.recv(100) == b""  # dropped by the sidecar
        assert time.monotonic() - started < scaled(3)
        slow.close()
        metrics = stack.metrics_text()
        assert sample(metrics, "sidecar_limit_hits_total", limit="handshake_timeout") == 1
        rows = rows_until(stack.db_url, lambda rows: len(rows) >= 1)
        assert [r["tenant"] for r in rows] == ["t1"]
        assert "auth off" in serve.output()
