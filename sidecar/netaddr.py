"""Listening addresses: parse `HOST:PORT` / `[::1]:PORT` and bind sockets the way we need."""

from __future__ import annotations

import socket

from sidecar.errors import ConfigError


def parse_listen(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{option} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def bind(value: str, option: str, tcp_user_timeout: float | None = None) -> socket.socket:
    """A listening socket; `TCP_USER_TIMEOUT` is inherited by every accepted connection, so
    the kernel gives up on a peer that stops acknowledging data (a half-open client)."""
    host, port = parse_listen(value, option)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if tcp_user_timeout and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(tcp_user_timeout * 1000))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{option} {value}: cannot listen there ({exc.strerror})") from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock
