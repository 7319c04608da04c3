"""Per-session state that an idle connection carries: the heartbeat RTT window."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sidecar.context import Limits
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
    scope = {"type": "websocket", "headers": [], "client": ("10.0.0.1", 5000)}
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
