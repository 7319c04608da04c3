"""The browser client library (clients/js) in headless Chromium against a real sidecar: the
shipped example page streams an answer, the network is cut mid-answer, and the page resumes
with every delta shown exactly once; a Stop press is accounted as what the page rendered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from sidecar.simulate.model import WORDS
from tests.e2e.ledger import session_rows, wait_for_rows
from tests.support.chromium import Chromium, ChromiumProcess, Page
from tests.support.stack import REPO, Stack, running_stack
from tests.support.tcpcut import CuttableProxy
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLIENT_DIR = REPO / "clients" / "js"
TOKENS = 300
ANSWER = "$('answer').textContent"
STATUS = "$('status').textContent"
HELPERS = "var $ = (id) => document.getElementById(id);"


def expected_text(tokens: int) -> str:
    return "".join(WORDS[i % len(WORDS)] for i in range(tokens))


@asynccontextmanager
async def example_page(browser: Chromium, proxy: CuttableProxy, tenant: str) -> AsyncIterator[Page]:
    """Serve clients/js over HTTP and open examples/minimal.html through the proxy."""
    app = web.Application()
    app.router.add_static("/", CLIENT_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]
    sidecar = f"ws://127.0.0.1:{proxy.port}/v1/stream"
    url = (
        f"http://127.0.0.1:{http_port}/examples/minimal.html"
        f"?sidecar={sidecar}&tenant={tenant}&model=sim-small"
    )
    try:
        page = await browser.new_page(url)
        await page.evaluate(HELPERS)
        await page.wait_for(f"{STATUS} === 'open'", timeout=10)
        yield page
    finally:
        await runner.cleanup()


def start_stack(stack: Stack, tokens_per_second: str) -> None:
    stack.start_sim("--ttft", "0.01", "--tokens-per-second", tokens_per_second,
                    "--default-max-tokens", str(TOKENS))  # fmt: skip
    stack.start_serve("--on-disconnect", "grace", "--resume-grace", "10")


def test_example_page_resumes_a_cut_answer_exactly_once(
    tmp_path: Path, chromium_process: ChromiumProcess
) -> None:
    with running_stack(tmp_path) as stack:
        start_stack(stack, "100")

        async def scenario() -> tuple[str, str, int]:
            async with (
                CuttableProxy(stack.port) as proxy,
                Chromium(process=chromium_process) as browser,
                example_page(browser, proxy, "browser") as page,
            ):
                await page.evaluate("$('ask').requestSubmit()")
                await page.wait_for(f"{ANSWER}.length > 200", timeout=10)
                proxy.cut()  # the network drops mid-answer; the sidecar keeps generating
                await page.wait_for(f"{STATUS}.startsWith('done')", timeout=20)
                return await page.evaluate(ANSWER), await page.evaluate(STATUS), proxy.accepted

        answer, status, connections = asyncio.run(scenario())
        assert connections == 2  # the first connection and one reconnect
        assert answer == expected_text(TOKENS)  # no gap, no duplicate, in order
        assert status == f"done: length, {TOKENS} tokens"
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "completed" and row["tenant"] == "browser"
        assert row["generated_tokens"] == row["delivered_tokens"] == TOKENS
        assert row["wasted_tokens"] == 0
        (session,) = session_rows(stack.db_url)  # the reconnect resumed the same session
        assert session["streams"] == 1


def test_stop_button_is_accounted_as_what_the_page_rendered(
    tmp_path: Path, chromium_process: ChromiumProcess
) -> None:
    with running_stack(tmp_path) as stack:
        start_stack(stack, "50")

        async def scenario() -> tuple[str, str]:
            async with (
                CuttableProxy(stack.port) as proxy,
                Chromium(process=chromium_process) as browser,
                example_page(browser, proxy, "stopper") as page,
            ):
                await page.evaluate("$('ask').requestSubmit()")
                await page.wait_for(f"{ANSWER}.length > 60", timeout=10)
                await page.evaluate("$('stop').click()")
                await page.wait_for(f"{STATUS}.startsWith('done')", timeout=5)
                await asyncio.sleep(scaled(0.3))  # deltas already on their way must not show
                return await page.evaluate(ANSWER), await page.evaluate(STATUS)

        answer, status = asyncio.run(scenario())
        assert status == "done: cancelled"
        shown = answer.count(" ")  # every simulated word starts with a space
        assert answer == expected_text(shown)
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "client_cancelled"
        # The ack sent with the cancel says exactly what was on screen.
        assert 0 < row["delivered_tokens"] == shown <= row["generated_tokens"] < TOKENS
