"""F9 (part): a refused WebSocket upgrade is a normal event: counted, never logged as an ERROR.

Before: every refusal by HTTP response (401, 403, 429, 503) made uvicorn log "ASGI callable
returned without completing handshake." at ERROR, so a client without a key could fill the
error log at will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.helpers import refused, sample
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

REFUSALS = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("refusals")
    with running_stack(tmp) as stack:
        stack.start_sim()
        stack.start_serve("--auth", "apikey", "--allowed-origin", "https://app.example")
        yield stack


def test_refused_upgrades_are_counted_not_logged_as_errors(stack: Stack) -> None:
    async def run() -> list[int]:
        statuses = []
        for n in range(REFUSALS):
            if n % 2:
                status, _body, _headers = await refused(stack.ws_url)
            else:
                status, _body, _headers = await refused(stack.ws_url, origin="https://evil.test")
            statuses.append(status)
        return statuses

    statuses = asyncio.run(run())
    assert statuses == [403, 401] * (REFUSALS // 2)
    text = stack.metrics_text()
    assert sample(text, "sidecar_auth_failures_total", reason="missing_credential") == 10
    assert sample(text, "sidecar_auth_failures_total", reason="origin_not_allowed") == 10
    assert stack.serve is not None
    log = stack.serve.output()
    assert "ERROR" not in log and "without completing handshake" not in log, log
