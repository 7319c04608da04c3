"""Operators' endpoints on `--admin-listen`: `/metrics`, `/healthz`, `/readyz`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.context import ServerContext
from sidecar.ingress.asgi import lifespan, respond_json
from sidecar.upstream.breaker import BreakerState


class AdminApp:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
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
        else:
            await respond_json(send, 404, {"error": {"message": "not found", "code": 404}})
