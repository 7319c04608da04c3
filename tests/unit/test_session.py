"""Per-session state that an idle connection carries: the heartbeat RTT window."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from sidecar.context import Limits
from sidecar.ingress.app import ClientApp
from sidecar.ingress.transport import EXTENSION
from sidecar.ingress.websocket import RTT_WINDOW, WebSocketSession


def _session() -> WebSocketSession:
    observed: list[float] = []
    ctx: Any = SimpleNamespace(
        edge=None,
        limits=Limits(),
        app_ping_interval=0.0,
        resume_grace=0.0,
        instance_id="test",
        wall_clock=lambda: 0.0,
        clock=lambda: 0.0,
        metrics=SimpleNamespace(heartbeat_rtt=SimpleNamespace(observe=observed.append)),
        observer=SimpleNamespace(sample=lambda *_args: None),
    )
    scope = {
        "type": "websocket",
        "headers": [],
        "client": ("10.0.0.1", 5000),
        "extensions": {EXTENSION: SimpleNamespace()},
    }
    return WebSocketSession(scope, None, None, ctx)


def test_rtt_median_is_over_the_latest_window_of_pongs() -> None:
    session = _session()
    assert session._session_row(None)["heartbeat_rtt_p50_s"] is None
    for _ in range(RTT_WINDOW):
        session._on_rtt(1.0)  # old pongs, all pushed out below
    for n in range(RTT_WINDOW + 10):
        session._on_rtt(0.001 * (n % 3))
    row = session._session_row(None)
    assert session.rtts is not None and len(session.rtts) == RTT_WINDOW
    assert row["heartbeat_rtt_p50_s"] == 0.001
    assert row["heartbeat_rtt_max_s"] == 1.0  # the maximum is over the whole session
    assert row["client_addr"] == "10.0.0.1:5000"


def test_writes_the_peer_acknowledged_are_forgotten_at_the_tick() -> None:
    """The map from unsent bytes to streams keeps only what the peer has not acknowledged
    (bytes it has can never be counted unsent): ~1 s of writes, not the last 8,192."""
    from collections import deque

    session = _session()
    session.handle = SimpleNamespace(sample=lambda: 0, acked_bytes=300)  # type: ignore[assignment]
    live: Any = SimpleNamespace()
    session.writes = deque([(100, live, 1), (300, live, 2), (450, live, 3)])
    session.tick(1.0)
    assert list(session.writes) == [(450, live, 3)]


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/realtime"])
def test_websocket_endpoints_refuse_a_server_without_the_sidecars_transport(path: str) -> None:
    """Delivered counts and heartbeats come from `serve`'s WebSocket protocol; under another
    ASGI server the session would bill wrongly, so it is refused (1011), not half-served."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = ClientApp(SimpleNamespace(draining=False))  # type: ignore[arg-type]
    scope = {"type": "websocket", "path": path, "headers": [], "extensions": {}}
    asyncio.run(app(scope, None, send))
    assert sent == [{"type": "websocket.close", "code": 1011}]
