"""The admin ASGI app without sockets: `/sessions` read from real `WebSocketSession`s, `/ui`,
and the bearer token."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.context import Limits
from sidecar.ingress.admin import AdminAccess, AdminApp
from sidecar.ingress.session_state import State
from sidecar.ingress.stream import LiveStream
from sidecar.ingress.transport import EXTENSION
from sidecar.ingress.websocket import WebSocketSession
from sidecar.live import snapshot
from sidecar.upstream.breaker import Breaker

TOKEN = "s3cret-admin-token"


def _ctx() -> Any:
    return SimpleNamespace(
        edge=None,
        limits=Limits(),
        app_ping_interval=0.0,
        resume_grace=0.0,
        instance_id="i-1",
        wall_clock=lambda: 1_800_000_000.0,
        clock=lambda: 100.0,
        metrics=SimpleNamespace(
            heartbeat_rtt=SimpleNamespace(observe=lambda _v: None),
            registry=CollectorRegistry(),
            breaker_open=SimpleNamespace(set=lambda _v: None),
        ),
        breaker=Breaker(),
        observer=SimpleNamespace(sample=lambda *_args: None),
        sessions=set(),
        parked={},
        streams=set(),
        ended=deque(maxlen=10),
        draining=False,
    )


def _account(request_id: str, session_id: str | None) -> StreamAccount:
    return StreamAccount(
        stream_id="st-" + request_id,
        request_id=request_id,
        session_id=session_id,
        model="m",
        tenant="acme",
        ingress="ws" if session_id else "http",
        path="/v1/chat/completions",
        started_at=1_800_000_000.0 - 3,
        t_start=97.0,
    )


def _session(ctx: Any, tenant: str = "acme") -> WebSocketSession:
    scope = {
        "type": "websocket",
        "headers": [],
        "client": ("10.0.0.1", 5000),
        "query_string": f"tenant={tenant}".encode(),
        "extensions": {EXTENSION: SimpleNamespace(buffered=lambda: 0)},
    }
    session = WebSocketSession(scope, None, None, ctx)
    ctx.sessions.add(session)
    return session


class _Stream:
    """What the snapshot reads of a `Stream` in `ctx.streams`."""

    def __init__(self, account: StreamAccount) -> None:
        self.account = account


def _with_stream(session: WebSocketSession, request_id: str) -> StreamAccount:
    account = _account(request_id, session.id)
    live = LiveStream(SimpleNamespace(account=account), 0)  # type: ignore[arg-type]
    session.live[request_id] = live
    return account


async def _get(
    app: AdminApp, path: str, query: str = "", token: str | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "headers": headers,
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, None, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def get(app: AdminApp, path: str, query: str = "", token: str | None = None) -> Any:
    return asyncio.run(_get(app, path, query, token))


def test_sessions_reads_real_sessions_their_rtts_and_streams() -> None:
    ctx = _ctx()
    busy, idle = _session(ctx, "acme"), _session(ctx, "beta")
    for rtt in (0.004, 0.002, 0.003):
        busy._on_rtt(rtt)
    busy.missed = 1
    account = _with_stream(busy, "r1")
    for n in range(6):
        account.on_content(98.0 + n * 0.1, "t")
    account.on_written(6)
    account.on_ack(4)
    status, headers, body = get(AdminApp(ctx), "/sessions", "sort=rtt")
    assert status == 200 and headers[b"cache-control"] == b"no-store"
    answer = orjson.loads(body)
    assert [s["session_id"] for s in answer["sessions"]] == [busy.id, idle.id]
    first = answer["sessions"][0]
    assert first["tenant"] == "acme" and first["state"] == "open"
    assert first["rtt_last_seconds"] == 0.003 and first["rtt_p50_seconds"] == 0.003
    assert first["rtt_recent_seconds"] == [0.004, 0.002, 0.003]
    assert first["missed_pongs"] == 1
    (stream,) = first["streams"]
    assert stream["id"] == "r1" and stream["generated_tokens"] == 6
    assert stream["delivered_tokens"] == 4 and stream["ttft_seconds"] == 1.0
    assert answer["sessions"][1]["rtt_last_seconds"] is None


def test_parked_sessions_and_http_streams_are_listed() -> None:
    ctx = _ctx()
    session = _session(ctx)
    ctx.sessions.discard(session)
    ctx.parked[session.token] = session
    session.machine.state = State.PARKED
    _with_stream(session, "r1")
    http = _account("h1", None)
    ctx.streams.add(_Stream(http))
    answer = orjson.loads(get(AdminApp(ctx), "/sessions")[2])
    (s,) = answer["sessions"]
    assert s["state"] == "parked" and s["streams"][0]["stuck"] == "client_away"
    assert [h["id"] for h in answer["http_streams"]] == ["h1"]


def test_ended_ring_feeds_just_ended() -> None:
    ctx = _ctx()
    account = _account("gone", "sess")
    account.finish(Outcome.CLIENT_GONE, 99.0)
    ctx.ended.append(account)
    (ended,) = orjson.loads(get(AdminApp(ctx), "/sessions")[2])["ended"]
    assert ended["outcome"] == "client_gone" and ended["id"] == "gone"


def test_a_bad_query_is_a_400_with_one_line() -> None:
    status, _, body = get(AdminApp(_ctx()), "/sessions", "sort=cost")
    assert status == 400
    assert orjson.loads(body)["error"]["message"].startswith("sort must be one of")


def test_ui_is_a_self_contained_page() -> None:
    status, headers, body = get(AdminApp(_ctx()), "/ui")
    assert status == 200 and headers[b"content-type"].startswith(b"text/html")
    assert b"connect-src 'self'" in headers[b"content-security-policy"]
    page = body.decode()
    assert 'fetch("sessions?' in page
    assert "http://" not in page.replace('"http://www.w3.org/2000/svg"', "")  # nothing remote
    assert "innerHTML" not in page  # client-chosen names only ever become text nodes


@pytest.mark.parametrize(
    ("path", "token", "metrics_open", "status"),
    [
        ("/sessions", None, False, 401),
        ("/sessions", "wrong", False, 401),
        ("/sessions", TOKEN, False, 200),
        ("/metrics", None, False, 401),
        ("/metrics", TOKEN, False, 200),
        ("/metrics", None, True, 200),
        ("/sessions", None, True, 401),
        ("/healthz", None, False, 200),
        ("/ui", None, False, 200),
    ],
)
def test_admin_token(path: str, token: str | None, metrics_open: bool, status: int) -> None:
    app = AdminApp(_ctx(), AdminAccess(TOKEN, metrics_open))
    got, headers, _ = get(app, path, token=token)
    assert got == status
    if status == 401:
        assert headers[b"www-authenticate"].startswith(b"Bearer")


def test_no_token_configured_means_open() -> None:
    assert get(AdminApp(_ctx()), "/sessions")[0] == 200


def test_trace_link_reaches_the_page() -> None:
    app = AdminApp(_ctx(), AdminAccess(trace_link="http://jaeger/trace/{trace_id}"))
    assert orjson.loads(get(app, "/sessions")[2])["trace_link"] == "http://jaeger/trace/{trace_id}"


def test_snapshot_lists_streams_without_a_session_as_http() -> None:
    ctx = _ctx()
    ctx.streams.add(_Stream(_account("ws", "sess")))
    ctx.streams.add(_Stream(_account("h", None)))
    assert [a.request_id for a in snapshot.read(ctx).http] == ["h"]
