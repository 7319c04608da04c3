"""Self-test for tests/support/chromium.py: a real headless Chromium opens a
real WebSocket to a local aiohttp server, and closing the tab closes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web

from tests.support.chromium import Chromium, ChromiumProcess, ChromiumUnavailable, JavaScriptError
from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

PAGE = """<!doctype html>
<html><head><title>sidecar selftest</title></head>
<body style="background:#2a6">
<h1>chromium selftest</h1>
<script>
  window.received = [];
  window.wsState = "connecting";
  const ws = new WebSocket("ws://" + location.host + "/ws");
  ws.onopen = () => { window.wsState = "open"; ws.send("hello from page"); };
  ws.onmessage = (ev) => { window.received.push(ev.data); };
  ws.onclose = () => { window.wsState = "closed"; };
</script>
</body></html>
"""


@dataclass
class EchoServer:
    url: str
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    messages: list[str] = field(default_factory=list)


@asynccontextmanager
async def echo_server() -> AsyncIterator[EchoServer]:
    """aiohttp on 127.0.0.1: ``/`` serves PAGE, ``/ws`` greets and echoes."""
    state = EchoServer(url="")

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        state.connected.set()
        await ws.send_str("welcome")
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                state.messages.append(msg.data)
                await ws.send_str(f"echo:{msg.data}")
        state.closed_at = time.monotonic()
        state.closed.set()
        return ws

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}/"
    try:
        yield state
    finally:
        await runner.cleanup()


async def _page_websocket_roundtrip(browser: Chromium, shot: Path) -> None:
    async with echo_server() as server:
        page = await browser.new_page(server.url)
        assert await page.evaluate("document.title") == "sidecar selftest"
        await page.wait_for("window.received.includes('echo:hello from page')", timeout=5)
        assert server.connected.is_set()
        assert server.messages == ["hello from page"]
        assert await page.evaluate("window.received") == ["welcome", "echo:hello from page"]
        assert await page.evaluate("Promise.resolve(6 * 7)") == 42

        png = await page.screenshot(shot)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert await asyncio.to_thread(shot.read_bytes) == png

        closing_started = time.monotonic()
        await page.close()
        await asyncio.wait_for(server.closed.wait(), timeout=scaled(1.0))
        assert server.closed_at is not None
        assert server.closed_at - closing_started <= scaled(1.0)


def test_page_websocket_close_tab_and_screenshot(
    chromium_process: ChromiumProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Chromium(process=chromium_process) as browser:
            await _page_websocket_roundtrip(browser, tmp_path / "shot.png")

    asyncio.run(main())


def test_errors_and_timeouts(chromium_process: ChromiumProcess) -> None:
    async def main() -> None:
        async with Chromium(process=chromium_process) as browser:
            page = await browser.new_page()
            with pytest.raises(JavaScriptError, match="boom"):
                await page.evaluate("(() => { throw new Error('boom'); })()")
            with pytest.raises(JavaScriptError, match="nope"):
                await page.evaluate("Promise.reject(new Error('nope'))")
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await page.wait_for("window.neverSet === true", timeout=0.3)
            assert time.monotonic() - started < scaled(0.3) + 5
            # Tabs left open are closed by the context manager.

    asyncio.run(main())


def test_owned_browser_lifecycle() -> None:
    """``async with Chromium()`` launches its own browser and kills it after."""
    holder: list[ChromiumProcess] = []

    async def main() -> None:
        async with Chromium() as browser:
            holder.append(browser.process)
            assert browser.process.is_running()
            version = await browser.version()
            assert "Chrome" in version["product"]
            page = await browser.new_page("data:text/html,<title>x</title>")
            assert await page.evaluate("document.title") == "x"

    try:
        asyncio.run(main())
    except ChromiumUnavailable as exc:
        service_unavailable(f"Chromium unavailable: {str(exc).splitlines()[0]}")
    process = holder[0]
    assert not process.is_running()
    assert process.base_dir is None
