"""Loopback port helpers shared by the service fixtures.

Provides :func:`free_port` (ask the kernel for an unused TCP port) and
:func:`wait_for_port` / :func:`async_wait_for_port` (poll until something accepts
TCP connections).  Services started by the tests always listen on loopback
(127.0.0.0/8 or ::1) only, and every wait is bounded and scaled with
:func:`tests.support.timeouts.scaled`.

``free_port`` is inherently racy (another process may grab the port between the
check and the service's ``bind``); callers that start a service should retry
with a new port when the bind fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from tests.support.timeouts import scaled

__all__ = ["async_wait_for_port", "free_port", "port_is_open", "wait_for_port"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free at the time of the call."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts TCP connections.

    ``timeout`` is in unscaled seconds (it is passed through :func:`scaled`).
    Raises ``TimeoutError`` with a one-line message when the deadline passes.
    """
    deadline = time.monotonic() + scaled(timeout)
    delay = 0.02
    while True:
        if port_is_open(host, port, timeout=min(0.5, max(0.05, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted TCP connections on {host}:{port} in time")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


async def async_wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Async twin of :func:`wait_for_port` (does not block the event loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(timeout)
    delay = 0.02
    while True:
        remaining = deadline - loop.time()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=min(0.5, max(0.05, remaining))
            )
        except (OSError, TimeoutError):
            pass
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"nothing accepted TCP connections on {host}:{port} in time")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
