"""`/v1/*` requests the sidecar does not account (`GET /v1/models`, files, batches, ...): passed
to the model server as they are and counted in `sidecar_unaccounted_requests_total{route}`, so
an operator sees what traffic the bill does not cover. The route label is the API family
(`/v1/models`, `/v1/files`, ...), or `other`: clients choose paths, labels must stay bounded.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from sidecar.context import ServerContext
from sidecar.errors import UpstreamError
from sidecar.ingress.asgi import respond_error
from sidecar.ingress.http import request_body
from sidecar.ingress.scope import header
from sidecar.telemetry import names
from sidecar.upstream.client import UPSTREAM_IO_ERRORS

MAX_ANSWER = 64 * 1024 * 1024
# Request headers passed on: what the body is (multipart uploads), and the API version an
# Anthropic client names.
PASSED_HEADERS: Final = (
    (b"content-type", "Content-Type"),
    (b"anthropic-version", "anthropic-version"),
)


def route_label(path: str) -> str:
    """`/v1/models/x` → `/v1/models`; a path outside the known families → `other`."""
    family = path.removeprefix("/v1/").split("/", 1)[0]
    return (
        f"/v1/{family}"
        if path.startswith("/v1/") and family in names.PASSTHROUGH_FAMILIES
        else names.OTHER_ROUTE
    )


def content_type(body: bytes) -> bytes:
    """The upstream client does not keep response headers: JSON is what these routes answer."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return b"application/octet-stream"
    return b"application/json"


async def pass_through(scope: dict[str, Any], receive: Any, send: Any, ctx: ServerContext) -> None:
    body = await request_body(receive, send)
    if body is None:
        return
    ctx.metrics.unaccounted.labels(route_label(scope["path"])).inc()
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
