"""Self-tests for tests/support/{ports,timeouts,unavailable}.py."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from tests.support.ports import async_wait_for_port, free_port, port_is_open, wait_for_port
from tests.support.timeouts import ENV_VAR, scaled, timeout_factor
from tests.support.unavailable import service_unavailable


def test_scaled_uses_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert timeout_factor() == 1.0
    assert scaled(2) == 2.0
    monkeypatch.setenv(ENV_VAR, "2.5")
    assert scaled(2) == 5.0
    for bad in ("0", "-1", "inf", "fast"):
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(ValueError, match=ENV_VAR):
            scaled(1)


def test_free_port_and_wait_for_port() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not port_is_open("127.0.0.1", port)
    with pytest.raises(TimeoutError, match=str(port)):
        wait_for_port("127.0.0.1", port, timeout=0.2)

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def bind_later() -> None:
        time.sleep(0.2)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    thread = threading.Thread(target=bind_later)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port, timeout=5)
        asyncio.run(async_wait_for_port("127.0.0.1", port, timeout=5))
    finally:
        thread.join()
        listener.close()


def test_free_port_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        service_unavailable("no IPv6 support in this Python build")
    try:
        port = free_port("::1")
    except OSError as exc:
        service_unavailable(f"::1 not configured: {exc}")
    assert 0 < port < 65536


def test_service_unavailable_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^no foo: gone$"):
        service_unavailable("no foo:\n  gone")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match=r"^no foo$"):
        service_unavailable("no foo")
