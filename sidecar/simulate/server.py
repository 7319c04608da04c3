"""The simulated model server's HTTP surface (aiohttp): OpenAI-compatible streaming routes.

Like vLLM, it stops generating as soon as its client disconnects; unlike a real server it
reports exactly what it generated at `GET /sim/stats` (`?detail=1` adds per-request counts
keyed by the `X-Request-Id` header).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from sidecar.simulate.model import SimSettings, SimStats, prompt_tokens_of

MAX_REQUEST_DETAIL = 10_000
SETTINGS_KEY = web.AppKey("settings", SimSettings)
STATS_KEY = web.AppKey("stats", SimStats)


def create_app(settings: SimSettings) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[SETTINGS_KEY] = settings
    app[STATS_KEY] = SimStats()
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _completions)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/sim/stats", _stats)
    app.router.add_post("/sim/latency", _latency)
    app.router.add_get("/health", _health)
    app.router.add_post("/abort_request", _abort_request)
    return app


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _models(_request: web.Request) -> web.Response:
    data = [{"id": "sim-small", "object": "model", "owned_by": "sidecar-simulate"}]
    return _json({"object": "list", "data": data})


async def _stats(request: web.Request) -> web.Response:
    detail = request.query.get("detail") in ("1", "true")
    return _json(request.app[STATS_KEY].as_json(detail))


LATENCY_KEYS = ("ttft_factor", "itl_factor", "tail_fraction", "tail_factor")


async def _latency(request: web.Request) -> web.Response:
    """Change latency at run time: a step (`ttft_factor`), a ramp (step repeatedly) or a
    tail-only slowdown (`tail_fraction` of requests get `tail_factor` on the first token)."""
    settings = request.app[SETTINGS_KEY]
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


async def _abort_request(request: web.Request) -> web.Response:
    """SGLang's abort endpoint: the sidecar calls it when a client leaves (flavour sglang)."""
    try:
        rid = orjson.loads(await request.read())["rid"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _error(400, 'body must be JSON like {"rid": "..."}')
    request.app[STATS_KEY].abort_requests.append(str(rid))
    return _json({"success": True})


async def _completions(request: web.Request) -> web.StreamResponse:
    settings, stats = request.app[SETTINGS_KEY], request.app[STATS_KEY]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "request body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("model", ""), str):
        return _error(400, "request body must be a JSON object with a string model")
    chat = request.path.endswith("/chat/completions")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return _error(400, "max_tokens must be a positive integer")
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    stats.requests += 1
    if settings.should_fail():
        stats.failed += 1
        return _error(500, "simulated upstream failure", "server_error")
    run = _Run(settings, stats, request_id, body, chat, settings.output_length(max_tokens))
    if body.get("stream"):
        return await run.stream(request)
    return await run.whole()


class _Run:
    """One generation: counts every token it produces, whether or not anyone reads it."""

    def __init__(
        self,
        settings: SimSettings,
        stats: SimStats,
        request_id: str,
        body: dict[str, Any],
        chat: bool,
        length: int,
    ) -> None:
        self.settings, self.stats, self.request_id, self.chat = settings, stats, request_id, chat
        self.model = body.get("model") or "sim-small"
        self.prompt_tokens = prompt_tokens_of(body)
        self.length = length
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.continuous_usage = bool(options.get("continuous_usage_stats"))
        self.generated = 0
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.created = int(time.time())
        self.detail = {"generated": 0, "outcome": "active", "model": self.model}
        if len(stats.by_request) >= MAX_REQUEST_DETAIL:
            del stats.by_request[next(iter(stats.by_request))]
        stats.by_request[request_id] = self.detail

    def _produce(self) -> str:
        text = self.settings.token_text(self.generated)
        self.generated += 1
        self.stats.tokens_generated += 1
        self.detail["generated"] = self.generated
        return text

    def _end(self, outcome: str) -> None:
        self.detail["outcome"] = outcome
        self.detail["ended_at"] = time.time()
        if outcome == "completed":
            self.stats.completed += 1
        else:
            self.stats.aborted += 1

    async def whole(self) -> web.Response:
        self.stats.active += 1
        try:
            await asyncio.sleep(self.settings.first_token_delay())
            text = "".join(self._produce() for _ in range(self.length))
        finally:
            self.stats.active -= 1
        self._end("completed")
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return _json(
            {
                "id": self.id,
                "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
                "usage": self._usage(),
            }
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.stats.active += 1
        outcome = "aborted"
        try:
            await asyncio.sleep(self.settings.first_token_delay())
            if self.chat:
                await response.write(self._chunk({"role": "assistant", "content": ""}, None))
            for index in range(self.length):
                if index:
                    await asyncio.sleep(self.settings.token_interval())
                transport = request.transport
                if transport is None or transport.is_closing():
                    return response  # the client left: stop generating, like vLLM
                last = index == self.length - 1
                await response.write(self._chunk(self._produce(), "length" if last else None))
            if self.include_usage:
                await response.write(self._usage_chunk())
            await response.write(b"data: [DONE]\n\n")
            outcome = "completed"
            await response.write_eof()
        except ConnectionError:
            pass  # the client left while we wrote: stop generating
        finally:
            self.stats.active -= 1
            self._end(outcome)
        return response

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.generated,
            "total_tokens": self.prompt_tokens + self.generated,
        }

    def _chunk(self, content: str | dict[str, str], finish_reason: str | None) -> bytes:
        if self.chat:
            delta = content if isinstance(content, dict) else {"content": content}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": content, "finish_reason": finish_reason}
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if self.continuous_usage:
            chunk["usage"] = self._usage()
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _usage_chunk(self) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self._usage(),
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return _json({"error": {"message": message, "type": kind, "code": status}}, status)


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
