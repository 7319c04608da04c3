"""The admin `/ui` page in headless Debian Chromium against a real sidecar: it loads, asks for
nothing it cannot get offline, its numbers move without a reload, a closed session leaves, and
1,000 sessions do not break it.

`SIDECAR_UPDATE_SCREENSHOT=1` also writes the screenshot the README shows
(docs/images/live-sessions-ui.png).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.test_live_sessions import TOKEN, http_stream, read_and_ack
from tests.e2e.wsclient import Client, chat
from tests.support.chromium import Chromium, ChromiumProcess, Page
from tests.support.stack import REPO, running_stack
from tests.support.timeouts import scaled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CROWD = 1000
SCREENSHOT = REPO / "docs" / "images" / "live-sessions-ui.png"


def text_of(selector: str) -> str:
    return f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent"


async def crowd(url: str, count: int) -> list[ClientConnection]:
    """`count` idle connections, opened 100 at a time."""
    opened: list[ClientConnection] = []
    for start in range(0, count, 100):
        batch = [
            connect(url, ping_interval=None, open_timeout=scaled(20))
            for _ in range(min(100, count - start))
        ]
        opened += await asyncio.gather(*batch)
    return opened


async def generated_moves(page: Page, session_id: str) -> None:
    selector = f'tr[data-session="{session_id}"] .gen-del'
    before = await page.wait_for(text_of(selector), timeout=10)
    await page.wait_for(f"{text_of(selector)} !== {json.dumps(before)}", timeout=10)


def test_live_page(tmp_path: Path, chromium_process: ChromiumProcess) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "20")
        stack.start_serve(
            "--heartbeat-interval",
            "0.5",
            "--admin-token",
            TOKEN,
            "--trace-link",
            "http://tracing.example/trace/{trace_id}",
            "--trace-console",  # tracing on: sessions have a trace, their streams' spans in it
        )

        async def scenario() -> None:
            acme = await Client.connect(stack.ws_url + "?tenant=acme")
            beta = await Client.connect(stack.ws_url + "?tenant=beta")
            gamma = await Client.connect(stack.ws_url + "?tenant=gamma")
            idle = await Client.connect(stack.ws_url + "?tenant=delta")
            await beta.generate("short", chat(5))
            await beta.read_until_end("short")  # one stream that just ended, completed
            await idle.generate("stop", chat(100000))
            await idle.next("stop")  # start
            await idle.send({"type": "cancel", "id": "stop"})  # and one the user stopped
            over_http = asyncio.Event()
            http_task = asyncio.create_task(http_stream(stack, over_http))
            await acme.generate("r1", chat(100000, model="llama-3.1-8b-instruct"))
            await beta.generate("r2", chat(100000, model="qwen2.5-7b"))
            await gamma.generate("r3", chat(100000, model="llama-3.1-8b-instruct"))
            readers = [
                asyncio.create_task(read_and_ack(acme, "r1", None)),
                asyncio.create_task(read_and_ack(beta, "r2", None)),
                asyncio.create_task(read_and_ack(gamma, "r3", stop_acking_after=3)),
            ]
            acme_id = acme.hello["session"]
            async with Chromium(process=chromium_process) as browser:
                page = await browser.new_page(f"{stack.admin_url}/ui#token={TOKEN}")
                await page.evaluate("window.notReloaded = true")
                await page.wait_for("sidecarUi.last && sidecarUi.last.totals.sessions === 4")
                assert await page.evaluate("location.hash") == ""  # the token left the URL
                assert await page.evaluate("sessionStorage.length") == 1

                # Numbers move by themselves: tokens, and RTT with its sparkline.
                await generated_moves(page, acme_id)
                await page.wait_for(
                    f"document.querySelectorAll('tr[data-session=\"{acme_id}\"] polyline')"
                    ".length === 1",
                    timeout=10,
                )
                assert (await page.evaluate(text_of(f'tr[data-session="{acme_id}"] .rtt-last')))[
                    -2:
                ] == "ms"
                await page.wait_for(f"{text_of('#t-stuck')} === '1'", timeout=15)
                await page.wait_for(f"{text_of('#t-http')} === '1'", timeout=10)
                await page.wait_for(  # a few seconds of heartbeats for the sparklines
                    "sidecarUi.last.sessions[0].rtt_recent_seconds.length >= 8", timeout=15
                )
                assert "not acking" in await page.evaluate(text_of("#sessions"))
                assert "completed" in await page.evaluate(text_of("#ended"))
                links = await page.evaluate(
                    f"[...document.querySelectorAll('tr[data-session=\"{acme_id}\"] a')]"
                    ".map(a => a.href)"
                )
                session_trace, stream_trace = links
                assert session_trace.startswith("http://tracing.example/trace/")
                assert session_trace == stream_trace  # the stream's span is in the session's trace
                shot = await page.screenshot(tmp_path / "ui.png")
                assert shot[:8] == b"\x89PNG\r\n\x1a\n"
                if os.environ.get("SIDECAR_UPDATE_SCREENSHOT") == "1":
                    SCREENSHOT.parent.mkdir(exist_ok=True)
                    shutil.copyfile(tmp_path / "ui.png", SCREENSHOT)

                # A closed session leaves the page; its stream is among the just ended.
                await acme.close()
                await page.wait_for(
                    f"!document.querySelector('tr[data-session=\"{acme_id}\"]')", timeout=10
                )
                await page.wait_for(f"{text_of('#ended')}.includes('client_gone')", timeout=10)

                # 1,000 more sessions: the page keeps polling, renders them all, no error.
                people = await crowd(stack.ws_url + "?tenant=crowd", CROWD)
                await page.evaluate(
                    "document.querySelector('select[name=limit]').value = '1000';"
                    "document.getElementById('filters').dispatchEvent(new Event('change'))"
                )
                await page.wait_for(
                    f"document.querySelectorAll('#sessions tbody tr').length === {CROWD}",
                    timeout=30,
                )
                assert await page.evaluate(text_of("#t-sessions")) == str(CROWD + 3)
                polls = await page.evaluate("sidecarUi.polls")
                await page.wait_for(f"sidecarUi.polls >= {polls + 3}", timeout=15)
                await generated_moves(page, beta.hello["session"])
                assert await page.evaluate("sidecarUi.error") is None
                assert await page.evaluate("sidecarUi.renderMs") < 1000 * scaled(1)
                assert await page.evaluate("window.notReloaded") is True
                await asyncio.gather(*(ws.close() for ws in people))
                await page.wait_for(f"{text_of('#t-sessions')} === '3'", timeout=30)

            http_task.cancel()
            for task in readers:
                task.cancel()
            await asyncio.gather(http_task, *readers, return_exceptions=True)
            for client in (beta, gamma, idle):
                await client.close()

        asyncio.run(scenario())


def test_page_asks_for_the_token(tmp_path: Path, chromium_process: ChromiumProcess) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        stack.start_serve("--admin-token", TOKEN)

        async def scenario() -> None:
            async with Chromium(process=chromium_process) as browser:
                page = await browser.new_page(f"{stack.admin_url}/ui")
                await page.wait_for("sidecarUi.error && sidecarUi.error.includes('token')")
                assert (
                    await page.evaluate("getComputedStyle(document.getElementById('auth')).display")
                    == "flex"
                )
                await page.evaluate(
                    f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                    "document.getElementById('auth').requestSubmit()"
                )
                await page.wait_for("sidecarUi.last && sidecarUi.error === null")
                assert await page.evaluate(text_of("#t-sessions")) == "0"

        asyncio.run(scenario())
