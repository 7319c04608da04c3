"""The model routes over HTTP: chat and text completions, Responses, Messages, embeddings.

Each request: parse, pick its faults (`sim_fault` overrides the ones in force), count it in,
then the faults that come before any answer (a silent first byte, an error status), then the
generation, streamed or whole. Requests may name any model; answers echo it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from sidecar.simulate import embeddings
from sidecar.simulate.dialects import ChatCompletions, Dialect, openai_error
from sidecar.simulate.faults import FaultError, Faults, request_faults
from sidecar.simulate.generation import Generation, pause
from sidecar.simulate.messages_api import Messages, anthropic_error
from sidecar.simulate.prompt import prompt_tokens
from sidecar.simulate.responses_api import Responses
from sidecar.simulate.state import STATE_KEY, SimState
from sidecar.simulate.stats import Tally

DROP_FLUSH_SECONDS = 1.0

DialectFactory = Callable[[str, str, int, int, dict[str, Any]], Dialect]
ErrorBody = Callable[[int, str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # its key in /sim/stats by_route
    cap_fields: tuple[str, ...]  # request fields that cap the output, first found wins
    error: ErrorBody
    dialect: DialectFactory


def _chat(rid: str, model: str, created: int, prompt: int, body: dict[str, Any]) -> Dialect:
    return ChatCompletions(rid, model, created, prompt, body, chat=True)


def _text(rid: str, model: str, created: int, prompt: int, body: dict[str, Any]) -> Dialect:
    return ChatCompletions(rid, model, created, prompt, body, chat=False)


def _messages(rid: str, model: str, created: int, prompt: int, body: dict[str, Any]) -> Dialect:
    return Messages(rid, model, prompt)


CHAT = Route("chat", ("max_completion_tokens", "max_tokens"), openai_error, _chat)
COMPLETIONS = Route("completions", ("max_tokens",), openai_error, _text)
RESPONSES = Route("responses", ("max_output_tokens",), openai_error, Responses)
MESSAGES = Route("messages", ("max_tokens",), anthropic_error, _messages)


class HttpChannel:
    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self.dropped = False

    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def send(self, event: bytes) -> None:
        assert self.response is not None
        await self.response.write(event)

    async def drop(self) -> None:
        """Reset the connection once what was written has left: no terminating chunk."""
        self.dropped = True
        transport = self.request.transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DROP_FLUSH_SECONDS
        while transport.get_write_buffer_size() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def handler(route: Route) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _generate(request, route)

    return handle


async def _generate(request: web.Request, route: Route) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    parsed = await _parse(request, route.cap_fields, route.error, state)
    if isinstance(parsed, web.Response):
        return parsed
    body, cap, faults = parsed
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    model = body.get("model") or state.settings.served_models[0]
    prompt = prompt_tokens(body)
    tally = state.stats.begin(request_id, route.name, model, prompt)
    channel = HttpChannel(request)
    early = await _before_answer(channel, state, faults, tally, route.error)
    if early is not None:
        return early
    length, finish = state.settings.output(cap)
    dialect = route.dialect(request_id, model, int(time.time()), prompt, body)
    generation = Generation(state.settings, tally, dialect, faults, length, finish)
    if body.get("stream"):
        return await _stream(channel, generation, tally)
    return await _whole(channel, generation, dialect, route.error)


async def _parse(
    request: web.Request, cap_fields: tuple[str, ...], error: ErrorBody, state: SimState
) -> web.Response | tuple[dict[str, Any], int | None, Faults]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _json(error(400, "request body is not valid JSON"), 400)
    if not isinstance(body, dict) or not isinstance(body.get("model", ""), str):
        return _json(error(400, "request body must be a JSON object with a string model"), 400)
    cap = next((body[f] for f in cap_fields if body.get(f) is not None), None)
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        return _json(error(400, f"{cap_fields[-1]} must be a positive integer"), 400)
    try:
        faults = request_faults(body, state.faults)
    except FaultError as exc:
        return _json(error(400, str(exc)), 400)
    return body, cap, faults


async def _before_answer(
    channel: HttpChannel,
    state: SimState,
    faults: Faults,
    tally: Tally,
    error: ErrorBody,
) -> web.Response | None:
    """The faults that come before any answer; a response if the request ends here."""
    if faults.stall_before_first_byte:
        tally.fault("stall_before_first_byte")
        if not await pause(channel, faults.stall_before_first_byte):
            tally.end("aborted")
            return web.Response()  # nobody is left to read it
    if state.settings.should_fail(faults):
        tally.fault("error_rate")
        tally.end("failed")
        headers = {} if faults.retry_after is None else {"Retry-After": str(faults.retry_after)}
        message = "simulated model server failure: overloaded, retry later"
        return _json(error(faults.error_status, message), faults.error_status, headers)
    return None


async def _stream(channel: HttpChannel, generation: Generation, tally: Tally) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(channel.request)  # sends the status line and headers now
    channel.response = response
    outcome = "aborted"
    try:
        outcome = await generation.stream(channel)
    finally:
        tally.end(outcome)
    return response  # aiohttp ends the body unless the connection is gone


async def _whole(
    channel: HttpChannel, generation: Generation, dialect: Dialect, error: ErrorBody
) -> web.StreamResponse:
    """A non-streaming answer: the tokens come at once after the first-token delay; stalls,
    errors and drops after N tokens still apply."""
    faults, settings, tally = generation.faults, generation.settings, generation.tally
    if not await pause(channel, settings.first_token_delay()):
        tally.end("aborted")
        return web.Response()
    ends = [n for n in (faults.error_after_tokens, faults.drop_after_tokens) if n is not None]
    count = min([generation.length, *ends])
    text = "".join(generation.produce() for _ in range(count))
    if faults.stall_after_tokens is not None and faults.stall_after_tokens <= count:
        tally.fault("stall_after_tokens")
        seconds = float("inf") if faults.stall_is_forever() else faults.stall_seconds
        if not await pause(channel, seconds):
            tally.end("aborted")
            return web.Response()
    if faults.error_after_tokens == count:
        tally.fault("error_after_tokens")
        tally.end("failed")
        return _json(error(500, f"simulated model server error after {count} tokens"), 500)
    if faults.drop_after_tokens == count:
        tally.fault("drop_after_tokens")
        tally.end("failed")
        await channel.drop()
        return web.Response()
    tally.end("completed")
    return _json(dialect.whole(text, count, generation.finish))


async def embeddings_route(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    parsed = await _parse(request, (), openai_error, state)
    if isinstance(parsed, web.Response):
        return parsed
    body, _, faults = parsed
    model = body.get("model") or state.settings.served_models[0]
    try:
        answer = embeddings.answer(body, model)
    except embeddings.EmbeddingsError as exc:
        return _json(openai_error(400, str(exc)), 400)
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    tally = state.stats.begin(request_id, "embeddings", model, answer["usage"]["prompt_tokens"])
    channel = HttpChannel(request)
    early = await _before_answer(channel, state, faults, tally, openai_error)
    if early is not None:
        return early
    if not await pause(channel, state.settings.first_token_delay()):  # the forward pass
        tally.end("aborted")
        return web.Response()
    tally.end("completed")
    return _json(answer)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )
