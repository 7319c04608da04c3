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
    """Characters of the prompt's text on every route: chat `messages`, completions `prompt`,
    Responses `input` and `instructions`, Anthropic `system`, embeddings `input` (text in
    strings, content parts and items)."""
    chars = 0
    for key in PROMPT_KEYS:
        value = body.get(key)
        if value is not None:
            chars += _text_chars(value, 0)
    return chars


PROMPT_KEYS = ("messages", "prompt", "input", "instructions", "system")


def _text_chars(value: Any, depth: int) -> int:
    if isinstance(value, str):
        return len(value)
    if depth > 4:  # request bodies are bounded; so is the walk
        return 0
    if isinstance(value, dict):
        text = value.get("text")
        return len(text) if isinstance(text, str) else _text_chars(value.get("content"), depth + 1)
    if isinstance(value, list):
        return sum([_text_chars(item, depth + 1) for item in value])
    return 0


def client_addr(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
