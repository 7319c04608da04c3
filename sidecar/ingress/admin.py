"""Operators' endpoints on `--admin-listen`: `/metrics`, `/healthz`, `/readyz`, the live
sessions (`/sessions`, JSON) and the page that shows them (`/ui`).

With `--admin-token`, `/sessions` and `/metrics` (unless `--admin-metrics-open`, for a
Prometheus that sends no credential) want `Authorization: Bearer <token>`. The probes stay
open for the kubelet, and so does `/ui`: a static page with no data, which asks for the token
and sends it with each of its requests.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.context import ServerContext
from sidecar.ingress.asgi import lifespan, respond_json
from sidecar.ingress.scope import header
from sidecar.live import snapshot
from sidecar.live.query import parse_query
from sidecar.live.view import LiveView
from sidecar.upstream.breaker import BreakerState

ROWS_PER_SLICE = 25
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/ui"})
NO_STORE = [(b"cache-control", b"no-store")]
# The page is self-contained (admin ports are often offline): inline script and style only,
# and it may only talk to this origin.
UI_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        b"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    *NO_STORE,
]


@dataclass(frozen=True, slots=True)
class AdminAccess:
    token: str | None = None  # None: every admin endpoint is open
    metrics_open: bool = False  # `/metrics` without the token
    trace_link: str | None = None  # URL template with {trace_id}, for the page's links

    def allows(self, scope: dict[str, Any]) -> bool:
        path = scope["path"]
        if self.token is None or path in OPEN_PATHS or (path == "/metrics" and self.metrics_open):
            return True
        scheme, _, presented = (header(scope, b"authorization") or "").partition(" ")
        # Constant time: how far a guess matched must not show in how long the refusal took.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self.token.encode()
        )


class AdminApp:
    def __init__(self, ctx: ServerContext, access: AdminAccess | None = None) -> None:
        self.ctx = ctx
        self.access = access or AdminAccess()
        self.view = LiveView.new()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if not self.access.allows(scope):
            await respond_json(
                send,
                401,
                {"error": {"message": "send Authorization: Bearer <--admin-token>", "code": 401}},
                [(b"www-authenticate", b'Bearer realm="sidecar-admin"')],
            )
        elif path == "/metrics":
            self.ctx.metrics.breaker_open.set(self.ctx.breaker.state is BreakerState.OPEN)
            body = generate_latest(self.ctx.metrics.registry)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif path == "/healthz":
            await respond_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            await self._readyz(send)
        elif path == "/sessions":
            await self._sessions(scope, send)
        elif path == "/ui":
            page = ui_page()
            await send({"type": "http.response.start", "status": 200, "headers": UI_HEADERS})
            await send({"type": "http.response.body", "body": page})
        else:
            await respond_json(send, 404, {"error": {"message": "not found", "code": 404}})

    async def _readyz(self, send: Any) -> None:
        up = await self.ctx.upstream.ready()
        if up:  # the probe found the model server answering: let streams through again
            self.ctx.breaker.succeeded()
        ready = not self.ctx.draining and up
        status = "ready" if ready else ("draining" if self.ctx.draining else "upstream_down")
        answer: dict[str, Any] = {"status": status, "breaker": self.ctx.breaker.state.value}
        degraded = self.ctx.ledger_health()
        if ready and degraded is not None:
            # Still 200: streams are served and accounted (spooled or set aside); taking
            # every replica out of its load balancer over the ledger would be an outage.
            answer = {"status": "degraded", "reason": degraded}
        await respond_json(send, 200 if ready else 503, answer)

    async def _sessions(self, scope: dict[str, Any], send: Any) -> None:
        query = parse_query(scope.get("query_string", b"").decode("latin-1"))
        if isinstance(query, str):
            await respond_json(send, 400, {"error": {"message": query, "code": 400}})
            return
        ctx, view = self.ctx, self.view
        chosen = view.select(query, snapshot.read(ctx))
        listed = []
        for n, row in enumerate(chosen.rows, 1):
            listed.append(view.session_json(chosen, row))
            if n % ROWS_PER_SLICE == 0:  # let streams run between slices: a poll must not
                await asyncio.sleep(0)  # hold the loop while it lists 1,000 sessions
        answer = chosen.answer(listed)
        if self.access.trace_link:
            answer["trace_link"] = self.access.trace_link
        await respond_json(send, 200, answer, NO_STORE)


@cache
def ui_page() -> bytes:
    return resources.files("sidecar.live").joinpath("ui.html").read_bytes()
