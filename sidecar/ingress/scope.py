"""Reading a connection's ASGI scope: headers, query parameters, the tenant, the peer."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query_param(scope: dict[str, Any], name: str) -> str | None:
    raw = scope.get("query_string", b"")
    if not raw:  # most requests: skip the parser
        return None
    values = parse_qs(raw.decode("latin-1")).get(name)
    return values[0] if values else None


def tenant_of(scope: dict[str, Any]) -> str:
    tenant = header(scope, b"x-sidecar-tenant") or query_param(scope, "tenant") or "default"
    return tenant[:128]


def prompt_chars(body: dict[str, Any]) -> int:
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                chars += len(message["content"])
    if isinstance(body.get("prompt"), str):
        chars += len(body["prompt"])
    return chars


def client_addr(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
