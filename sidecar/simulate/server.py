"""The simulated model server's HTTP surface (aiohttp): the model routes and its own controls.

Like vLLM, it stops generating as soon as its client disconnects; unlike a real server it
reports exactly what it generated at `GET /sim/stats` (`?detail=1` adds per-request counts
keyed by the `X-Request-Id` header). `/sim/latency` and `/sim/faults` change it at run time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from sidecar.simulate import realtime, routes
from sidecar.simulate.dialects import openai_error
from sidecar.simulate.faults import FaultError, parse_faults
from sidecar.simulate.model import SimSettings
from sidecar.simulate.state import STATE_KEY, SimState


def create_app(settings: SimSettings) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[STATE_KEY] = SimState(settings)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_post("/v1/chat/completions", routes.handler(routes.CHAT))
    app.router.add_post("/v1/completions", routes.handler(routes.COMPLETIONS))
    app.router.add_post("/v1/responses", routes.handler(routes.RESPONSES))
    app.router.add_post("/v1/messages", routes.handler(routes.MESSAGES))
    app.router.add_post("/v1/embeddings", routes.embeddings_route)
    app.router.add_get("/v1/realtime", realtime.handle)
    app.router.add_get("/sim/stats", _stats)
    app.router.add_post("/sim/latency", _latency)
    app.router.add_get("/sim/faults", _faults)
    app.router.add_post("/sim/faults", _set_faults)
    app.router.add_delete("/sim/faults", _reset_faults)
    app.router.add_get("/health", _health)
    app.router.add_post("/abort_request", _abort_request)
    return app


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _model_object(state: SimState, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": state.started, "owned_by": "sidecar-simulate"}


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    data = [_model_object(state, name) for name in state.settings.served_models]
    return _json({"object": "list", "data": data})


async def _model(request: web.Request) -> web.Response:
    state, name = request.app[STATE_KEY], request.match_info["model"]
    if name not in state.settings.served_models:
        return _error(404, f"The model `{name}` does not exist.")
    return _json(_model_object(state, name))


async def _stats(request: web.Request) -> web.Response:
    detail = request.query.get("detail") in ("1", "true")
    return _json(request.app[STATE_KEY].stats.as_json(detail))


LATENCY_KEYS = ("ttft_factor", "itl_factor", "tail_fraction", "tail_factor")


async def _latency(request: web.Request) -> web.Response:
    """Change latency at run time: a step (`ttft_factor`), a ramp (step repeatedly) or a
    tail-only slowdown (`tail_fraction` of requests get `tail_factor` on the first token)."""
    settings = request.app[STATE_KEY].settings
    try:
        update = orjson.loads(await request.read())
        if not isinstance(update, dict):
            raise TypeError
        values = {k: float(update[k]) for k in LATENCY_KEYS if k in update}
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return _error(400, f"body must be a JSON object with any of {', '.join(LATENCY_KEYS)}")
    if any(v <= 0 for k, v in values.items() if k != "tail_fraction"):
        return _error(400, "factors must be positive")
    if not 0 <= values.get("tail_fraction", 0) <= 1:
        return _error(400, "tail_fraction must be in [0, 1]")
    for key, value in values.items():
        setattr(settings, key, value)
    return _json({key: getattr(settings, key) for key in LATENCY_KEYS})


async def _faults(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].faults.as_json())


async def _set_faults(request: web.Request) -> web.Response:
    """Change the faults in force, field by field; answers all of them."""
    state = request.app[STATE_KEY]
    try:
        state.faults = parse_faults(orjson.loads(await request.read()), state.faults)
    except orjson.JSONDecodeError:
        return _error(400, "body must be a JSON object of faults")
    except FaultError as exc:
        return _error(400, str(exc))
    return _json(state.faults.as_json())


async def _reset_faults(request: web.Request) -> web.Response:
    """Back to the faults the server started with (its command-line options)."""
    state = request.app[STATE_KEY]
    state.faults = state.settings.faults
    return _json(state.faults.as_json())


async def _abort_request(request: web.Request) -> web.Response:
    """SGLang's abort endpoint: the sidecar calls it when a client leaves (flavour sglang)."""
    try:
        rid = orjson.loads(await request.read())["rid"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _error(400, 'body must be JSON like {"rid": "..."}')
    request.app[STATE_KEY].stats.abort_requests.append(str(rid))
    return _json({"success": True})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(openai_error(status, message), status)


async def serve(settings: SimSettings, host: str, port: int) -> None:
    """Run until cancelled."""
    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
