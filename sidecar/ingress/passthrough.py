"""`/v1/*` requests the sidecar does not account (`GET /v1/models`, files, batches, ...): passed
to the model server as they are and counted in `sidecar_unaccounted_requests_total{route}`, so
an operator sees what traffic the bill does not cover. The route label is the API family
(`/v1/models`, `/v1/files`, ...), or `other`: clients choose paths, labels must stay bounded.

These requests carry `--upstream-api-key`: with an OpenAI key behind the sidecar, any client
could otherwise upload files, start batches or fine-tunes, or generate images on the
operator's account, none of it on the bill. `--passthrough-routes` names the families that
pass (e.g. `models`); the others are refused with 403 `route_not_allowed`.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from sidecar.context import ServerContext
from sidecar.errors import UpstreamError
from sidecar.ingress.asgi import respond_error
from sidecar.ingress.families import route_label
from sidecar.ingress.http import request_body
from sidecar.ingress.scope import header
from sidecar.upstream.client import UPSTREAM_IO_ERRORS

MAX_ANSWER = 64 * 1024 * 1024
# Request headers passed on: what the body is (multipart uploads), and the API version an
# Anthropic client names.
PASSED_HEADERS: Final = (
    (b"content-type", "Content-Type"),
    (b"anthropic-version", "anthropic-version"),
)


def content_type(body: bytes) -> bytes:
    """The upstream client does not keep response headers: JSON is what these routes answer."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return b"application/octet-stream"
    return b"application/json"


async def pass_through(scope: dict[str, Any], receive: Any, send: Any, ctx: ServerContext) -> None:
    route = route_label(scope["path"])
    allowed = ctx.passthrough_routes
    if allowed is not None and route.removeprefix("/v1/") not in allowed:
        ctx.metrics.passthrough_refused.labels(route).inc()
        message = f"this sidecar does not pass {route} requests to the model server"
        await respond_error(send, 403, message, "route_not_allowed")  # the body is never read
        return
    body = await request_body(receive, send)
    if body is None:
        return
    ctx.metrics.unaccounted.labels(route).inc()
    target = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    if query:
        target += b"?" + query
    headers = {name: value for key, name in PASSED_HEADERS if (value := header(scope, key))}
    try:
        status, answer = await ctx.upstream.forward(
            scope["method"], target.decode("latin-1"), body, headers, MAX_ANSWER
        )
    except UpstreamError as exc:
        await respond_error(send, exc.status or 502, str(exc), exc.code)
        return
    except UPSTREAM_IO_ERRORS as exc:
        await respond_error(send, 502, f"model server connection failed: {exc}", "upstream_error")
        return
    headers_out = [
        (b"content-type", content_type(answer)),
        (b"content-length", b"%d" % len(answer)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers_out})
    await send({"type": "http.response.body", "body": answer})
