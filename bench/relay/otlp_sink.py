"""An OTLP/HTTP receiver that accepts trace exports and drops them, so that a traced sidecar
pays for encoding and sending its spans as it would in production. `GET /stats` says how many
exports (and bytes) arrived, which shows that tracing really was on.

    python -m bench.relay.otlp_sink --listen 127.0.0.1:4318
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.otlp_sink")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    host, port = parser.parse_args(argv).listen.rsplit(":", 1)
    received = {"exports": 0, "bytes": 0}

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        received["exports"] += 1
        received["bytes"] += len(body)
        return web.Response(content_type="application/x-protobuf")

    async def stats(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(received), content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    app.router.add_get("/", health)
    app.router.add_get("/stats", stats)
    web.run_app(app, host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()
