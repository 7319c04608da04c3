"""Headless Debian Chromium driven over the DevTools protocol (CDP).

Provides:

* :class:`ChromiumProcess` - a synchronous handle on one headless ``chromium``
  process with a fresh ``--user-data-dir``; the DevTools port is chosen by the
  browser (``--remote-debugging-port=0``) and read back from the
  ``DevToolsActivePort`` file.  Usable as a (sync) context manager.
* :class:`Chromium` - the async API used by tests::

      async with Chromium() as browser:          # launches (and later kills) a browser
          page = await browser.new_page(url)     # Target.createTarget + page websocket
          await page.wait_for("window.ready === true", timeout=5)
          value = await page.evaluate("document.title")
          await page.screenshot(tmp_path / "shot.png")
          await page.close()                     # Target.closeTarget: like a user closing the tab

  ``Chromium(process=...)`` attaches to an already running
  :class:`ChromiumProcess` (e.g. the session fixture) instead of launching one.
* :func:`chromium_process_fixture` - pytest fixture factory; ``chromium_process``
  is the ready-made session-scoped fixture.  Tests then run
  ``asyncio.run(...)`` with ``async with Chromium(process=chromium_process)``.

Why: the dashboard/closed-tab tests need a real browser that opens real
WebSockets, without Playwright or a downloaded browser build; CDP over the
``websockets`` client is all that is needed.  Every wait is bounded and scaled
via :func:`tests.support.timeouts.scaled`.

Notes: the browser runs with ``--no-sandbox`` (we usually run as root in a
container) and ``--no-proxy-server`` (proxy variables in the environment must
never divert loopback traffic); the DevTools endpoint listens on 127.0.0.1
only.  The executable is ``$SIDECAR_CHROMIUM`` or ``/usr/bin/chromium`` (Debian
package ``chromium``).  The page websocket URL is the documented
``ws://127.0.0.1:PORT/devtools/page/<targetId>`` form, i.e. the target's
``webSocketDebuggerUrl``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

__all__ = [
    "DEFAULT_FLAGS",
    "CDPError",
    "Chromium",
    "ChromiumProcess",
    "ChromiumUnavailable",
    "JavaScriptError",
    "Page",
    "chromium_process",
    "chromium_process_fixture",
    "find_chromium",
]

HOST = "127.0.0.1"
Scope = Literal["session", "package", "module", "class", "function"]

DEFAULT_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--password-store=basic",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,800",
    "--remote-debugging-port=0",
)
"""Flags for every launch (``--user-data-dir`` is added per process)."""


class ChromiumUnavailable(RuntimeError):
    """The Chromium binary is missing or the browser did not come up."""


class CDPError(RuntimeError):
    """A DevTools protocol command returned an error or the connection died."""


class JavaScriptError(RuntimeError):
    """``Runtime.evaluate`` threw (or rejected) in the page."""


def find_chromium() -> str:
    """Return the Chromium executable (``$SIDECAR_CHROMIUM`` or ``/usr/bin/chromium``)."""
    override = os.environ.get("SIDECAR_CHROMIUM")
    candidates = [override] if override else ["/usr/bin/chromium", "chromium"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise ChromiumUnavailable(
        f"Chromium not found ({override or '/usr/bin/chromium'}); install the Debian package "
        "'chromium'"
    )


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    # Debian's chromium is chatty about D-Bus; keep only interesting lines.
    useful = [line for line in text.splitlines() if "dbus" not in line.lower()]
    return "\n".join(useful[-lines:])


class ChromiumProcess:
    """One headless Chromium process with a throwaway profile directory.

    After :meth:`launch`: ``port`` (DevTools HTTP/WebSocket port on 127.0.0.1)
    and ``browser_ws_url`` (the browser-level CDP endpoint) are set.
    """

    def __init__(self, executable: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.browser_ws_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def user_data_dir(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("Chromium not launched")
        return self.base_dir / "profile"

    @property
    def log_file(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("Chromium not launched")
        return self.base_dir / "chromium.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def launch(self, timeout: float = 30.0) -> ChromiumProcess:
        """Start the browser and wait (``scaled(timeout)``) for its DevTools port.

        Raises :class:`ChromiumUnavailable` (after cleaning up) on failure.
        """
        if self._proc is not None:
            raise RuntimeError("already launched")
        executable = self.executable or find_chromium()
        self.base_dir = Path(tempfile.mkdtemp(prefix="sidecar-chromium-"))
        self.user_data_dir.mkdir()
        argv = [
            executable,
            *DEFAULT_FLAGS,
            f"--user-data-dir={self.user_data_dir}",
            *self.extra_args,
            "about:blank",
        ]
        try:
            with open(self.log_file, "wb") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.base_dir,
                    # Its singleton socket directory goes under TMPDIR: here, so that close()
                    # removes it instead of leaving an org.chromium.Chromium.* in /tmp per run.
                    env={**os.environ, "TMPDIR": str(self.base_dir)},
                    start_new_session=True,
                )
            self._wait_for_devtools(scaled(timeout))
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise ChromiumUnavailable(f"cannot start {executable}: {exc}") from exc
            raise
        return self

    def _wait_for_devtools(self, wait: float) -> None:
        assert self._proc is not None
        active = self.user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + wait
        while True:
            if self._proc.poll() is not None:
                raise ChromiumUnavailable(
                    f"chromium exited with status {self._proc.returncode} during start-up: "
                    f"{_tail(self.log_file, 5)}"
                )
            with contextlib.suppress(OSError, ValueError):
                lines = active.read_text().splitlines()
                if len(lines) >= 2 and lines[1].startswith("/devtools/browser/"):
                    self.port = int(lines[0])
                    self.browser_ws_url = f"ws://{HOST}:{self.port}{lines[1]}"
                    return
            if time.monotonic() >= deadline:
                raise ChromiumUnavailable(
                    f"chromium wrote no DevToolsActivePort within {wait:.1f}s: "
                    f"{_tail(self.log_file, 5)}"
                )
            time.sleep(0.05)

    def close(self, timeout: float = 10.0) -> None:
        """Terminate the browser (SIGTERM, then SIGKILL to its process group)
        and remove the profile directory.  Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=scaled(timeout))
            # Renderer/zygote children live in the same (new) session/group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=scaled(timeout))
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
        self.port = None
        self.browser_ws_url = None

    def __enter__(self) -> ChromiumProcess:
        if self._proc is None:
            self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CDPConnection:
    """A CDP session over one websocket: numbered commands + events."""

    def __init__(self, ws: ClientConnection, label: str) -> None:
        self._ws = ws
        self._label = label
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self._closed_reason: str | None = None
        self._reader = asyncio.create_task(self._read_loop(), name=f"cdp-reader-{label}")

    @classmethod
    async def open(cls, url: str, label: str, timeout: float = 10.0) -> _CDPConnection:
        ws = await connect(
            url,
            proxy=None,
            compression=None,
            open_timeout=scaled(timeout),
            ping_interval=None,
            close_timeout=scaled(2),
            max_size=256 * 1024 * 1024,
            max_queue=None,
        )
        return cls(ws, label)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def _read_loop(self) -> None:
        reason = "connection closed"
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if "id" in message:
                    fut = self._pending.pop(message["id"], None)
                    if fut is None or fut.done():
                        continue
                    if "error" in message:
                        err = message["error"]
                        fut.set_exception(CDPError(f"{err.get('message')} ({err.get('code')})"))
                    else:
                        fut.set_result(message.get("result", {}))
                else:
                    method = message.get("method", "")
                    for waiter in [w for w in self._waiters if w[0] == method]:
                        self._waiters.remove(waiter)
                        if not waiter[1].done():
                            waiter[1].set_result(message.get("params", {}))
        except ConnectionClosed as exc:
            reason = f"connection closed ({exc})"
        except Exception as exc:  # pragma: no cover - defensive
            reason = f"reader failed: {exc!r}"
        finally:
            self._closed_reason = reason
            error = CDPError(f"CDP {self._label}: {reason}")
            for fut in [*self._pending.values(), *(w[1] for w in self._waiters)]:
                if not fut.done():
                    fut.set_exception(error)
            self._pending.clear()
            self._waiters.clear()

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send a command and return its ``result`` (raises :class:`CDPError`)."""
        if self._closed_reason is not None:
            raise CDPError(f"CDP {self._label}: {self._closed_reason}")
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self._ws.send(
                json.dumps({"id": msg_id, "method": method, "params": params or {}})
            )
            async with asyncio.timeout(scaled(timeout)):
                return await fut
        except ConnectionClosed as exc:
            raise CDPError(f"CDP {self._label}: connection closed while sending {method}") from exc
        except TimeoutError:
            raise TimeoutError(f"CDP {method} got no reply within {scaled(timeout):.1f}s") from None
        finally:
            self._pending.pop(msg_id, None)

    def expect_event(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """Return a future for the next event ``method`` (register *before*
        triggering it)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self._closed_reason is not None:
            fut.set_exception(CDPError(f"CDP {self._label}: {self._closed_reason}"))
        else:
            self._waiters.append((method, fut))
        return fut

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(scaled(5)):
                await self._reader
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        for fut in (w[1] for w in self._waiters):
            if not fut.done():
                fut.cancel()
        self._waiters.clear()


class Page:
    """One browser tab, controlled over its own CDP websocket."""

    def __init__(self, browser: Chromium, target_id: str, conn: _CDPConnection) -> None:
        self._browser = browser
        self.target_id = target_id
        self._conn = conn
        self.closed = False

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the ``load`` event (raises on network errors)."""
        loaded = self._conn.expect_event("Page.loadEventFired")
        try:
            result = await self._conn.send("Page.navigate", {"url": url}, timeout=timeout)
            if result.get("errorText"):
                raise CDPError(f"navigation to {url} failed: {result['errorText']}")
            async with asyncio.timeout(scaled(timeout)):
                await loaded
        except TimeoutError:
            raise TimeoutError(f"{url} did not finish loading in time") from None
        finally:
            if not loaded.done():
                loaded.cancel()

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expression`` in the page (promises are awaited) and
        return its JSON-serialisable value.  Raises :class:`JavaScriptError`."""
        result = await self._conn.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "userGesture": True,
            },
            timeout=timeout,
        )
        details = result.get("exceptionDetails")
        if details:
            exc = details.get("exception") or {}
            text = exc.get("description") or exc.get("value") or details.get("text")
            raise JavaScriptError(f"{expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(
        self,
        condition: str,
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> Any:
        """Poll the JS expression ``condition`` until it is truthy and return
        its value.  Exceptions while polling count as "not yet".  Raises
        ``TimeoutError`` after ``scaled(timeout)`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(timeout)
        last: object = None
        while True:
            try:
                value = await self.evaluate(condition, timeout=max(1.0, timeout))
            except JavaScriptError as exc:
                last = exc
            else:
                if value:
                    return value
                last = value
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"JS condition {condition!r} not true within {scaled(timeout):.1f}s "
                    f"(last: {last!r})"
                )
            await asyncio.sleep(interval)

    async def screenshot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """Capture the viewport as PNG (``Page.captureScreenshot``); write it
        to ``path`` if given and return the bytes."""
        result = await self._conn.send("Page.captureScreenshot", {"format": "png"})
        data = base64.b64decode(result["data"])
        if path is not None:
            await asyncio.to_thread(Path(path).write_bytes, data)
        return data

    async def close(self) -> None:
        """Close the tab like a user would (``Target.closeTarget``): the page
        unloads and its WebSockets are closed by the browser.  Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._browser._close_target(self.target_id)
        finally:
            await self._conn.close()
            self._browser._forget(self)


class Chromium:
    """Async context manager: a CDP connection to a headless Chromium.

    Without ``process`` a private :class:`ChromiumProcess` is launched on
    enter and killed on exit; with ``process`` the given running browser is
    used and left running (only tabs opened here are closed on exit).
    """

    def __init__(
        self,
        process: ChromiumProcess | None = None,
        *,
        executable: str | None = None,
        extra_args: Sequence[str] = (),
        launch_timeout: float = 30.0,
    ) -> None:
        self._owned = process is None
        self.process = process or ChromiumProcess(executable, extra_args)
        self._launch_timeout = launch_timeout
        self._conn: _CDPConnection | None = None
        self._pages: list[Page] = []

    @property
    def port(self) -> int:
        if self.process.port is None:
            raise RuntimeError("Chromium not running")
        return self.process.port

    async def __aenter__(self) -> Chromium:
        if self._owned:
            await asyncio.to_thread(self.process.launch, self._launch_timeout)
        if not self.process.is_running() or self.process.browser_ws_url is None:
            raise ChromiumUnavailable("Chromium process is not running")
        try:
            self._conn = await _CDPConnection.open(self.process.browser_ws_url, "browser")
        except BaseException:
            if self._owned:
                await asyncio.to_thread(self.process.close)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for page in list(self._pages):
                with contextlib.suppress(Exception):
                    await page.close()
            if self._conn is not None:
                if self._owned:
                    with contextlib.suppress(Exception):
                        await self._conn.send("Browser.close", timeout=5)
                await self._conn.close()
                self._conn = None
        finally:
            if self._owned:
                await asyncio.to_thread(self.process.close)

    def _browser_conn(self) -> _CDPConnection:
        if self._conn is None:
            raise RuntimeError("use 'async with Chromium() as browser'")
        return self._conn

    async def version(self) -> dict[str, Any]:
        """Return ``Browser.getVersion`` (product, protocolVersion, ...)."""
        return await self._browser_conn().send("Browser.getVersion")

    async def new_page(self, url: str = "about:blank", timeout: float = 30.0) -> Page:
        """Open a new tab, attach to it and (unless ``about:blank``) navigate
        to ``url``, waiting for its ``load`` event."""
        browser = self._browser_conn()
        created = await browser.send("Target.createTarget", {"url": "about:blank"})
        target_id: str = created["targetId"]
        ws_url = f"ws://{HOST}:{self.port}/devtools/page/{target_id}"
        try:
            conn = await _CDPConnection.open(ws_url, f"page {target_id[:8]}")
        except BaseException:
            with contextlib.suppress(Exception):
                await self._close_target(target_id)
            raise
        page = Page(self, target_id, conn)
        self._pages.append(page)
        try:
            await conn.send("Page.enable")
            await conn.send("Runtime.enable")
            if url != "about:blank":
                await page.navigate(url, timeout=timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await page.close()
            raise
        return page

    async def _close_target(self, target_id: str) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        result = await conn.send("Target.closeTarget", {"targetId": target_id})
        if result.get("success") is False:
            raise CDPError(f"Target.closeTarget({target_id}) reported failure")

    def _forget(self, page: Page) -> None:
        with contextlib.suppress(ValueError):
            self._pages.remove(page)


def chromium_process_fixture(
    scope: Scope = "session", name: str = "chromium_process"
) -> Callable[..., Iterator[ChromiumProcess]]:
    """Return a pytest fixture called ``name`` yielding a running
    :class:`ChromiumProcess` (fails under ``CI=true``, skips otherwise, if
    Chromium cannot start)."""

    @pytest.fixture(scope=scope, name=name)
    def _chromium_process() -> Iterator[ChromiumProcess]:
        process = ChromiumProcess()
        try:
            process.launch()
        except ChromiumUnavailable as exc:
            service_unavailable(f"Chromium unavailable: {str(exc).splitlines()[0]}")
        try:
            yield process
        finally:
            process.close()

    return _chromium_process


chromium_process = chromium_process_fixture()
"""Session-scoped fixture ``chromium_process``: a running :class:`ChromiumProcess`."""
