"""Request bodies on every HTTP route: bounded at 8 MiB (413), and a client that leaves while
sending one gets no answer and starts nothing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from sidecar.ingress.http import MAX_BODY, relay_http
from sidecar.ingress.passthrough import pass_through

ROUTES = {
    "accounted": ("/v1/chat/completions", relay_http),
    "passthrough": ("/v1/models", pass_through),
}


def _run(route: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path, handler = ROUTES[route]
    pending, sent = list(messages), []

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    # Only the passthrough's route policy is read: both refusals come before any accounting
    # or upstream request.
    ctx = SimpleNamespace(passthrough_routes=None)
    asyncio.run(handler(scope, receive, send, ctx))  # type: ignore[arg-type]
    return sent


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_the_limit_is_refused_with_413(route: str) -> None:
    chunk = b"x" * (1024 * 1024)
    parts = MAX_BODY // len(chunk) + 1
    messages = [{"type": "http.request", "body": chunk, "more_body": True}] * parts
    sent = _run(route, messages)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413


@pytest.mark.parametrize("route", ROUTES)
def test_a_client_gone_mid_body_gets_nothing(route: str) -> None:
    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert _run(route, messages) == []
