"""`GET /v1/realtime?model=...`: the OpenAI Realtime API over a WebSocket, text only.

Client events: `session.update`, `conversation.item.create`, `response.create` (optionally with
a `sim_fault` object, as on the HTTP routes), `response.cancel`. One response runs at a time; it
stops when the client cancels it (then `response.done` says `cancelled`, with its usage) or
closes the socket (counted as aborted, like an HTTP client that leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from sidecar.simulate.faults import FaultError, request_faults
from sidecar.simulate.generation import Generation, pause
from sidecar.simulate.realtime_events import (
    Conversation,
    RealtimeResponse,
    error_event,
    event,
)
from sidecar.simulate.routes import HttpChannel
from sidecar.simulate.state import STATE_KEY, SimState


class WsChannel:
    """One response's view of the socket: gone when the client closed it or cancelled."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.http = HttpChannel(request)
        self.ws = ws
        self.cancelled = False  # response.cancel
        self.left = False  # the socket ended

    def gone(self) -> bool:
        return self.cancelled or self.left or self.ws.closed or self.http.gone()

    async def send(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("the realtime client closed the socket")
        await self.ws.send_str(data.decode())

    async def drop(self) -> None:
        await self.http.drop()  # no close frame: the TCP connection just ends


class Session:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, state: SimState) -> None:
        self.request, self.ws, self.state = request, ws, state
        model = request.query.get("model") or state.settings.served_models[0]
        self.conversation = Conversation(model)
        self.running: tuple[asyncio.Task[None], WsChannel] | None = None

    async def send(self, data: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_str(data.decode())

    async def on_text(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.send(error_event("client event is not valid JSON", "invalid_json"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "session.update":
            problem = self.conversation.update(message.get("session"))
            if problem:
                await self.send(error_event(problem, "invalid_value"))
            else:
                await self.send(event("session.updated", session=self.conversation.session()))
        elif kind == "conversation.item.create":
            item = self.conversation.add(message.get("item"))
            if item is None:
                await self.send(
                    error_event("item must be a message with text content parts", "invalid_value")
                )
            else:
                await self.send(event("conversation.item.added", item=item))
                await self.send(event("conversation.item.done", item=item))
        elif kind == "response.create":
            await self.create(message)
        elif kind == "response.cancel":
            await self.cancel()
        else:
            await self.send(error_event(f"unknown client event type {kind!r}", "unknown_event"))

    async def create(self, message: dict[str, Any]) -> None:
        if self.running is not None and not self.running[0].done():
            await self.send(
                error_event(
                    "the conversation already has an active response",
                    "conversation_already_has_active_response",
                )
            )
            return
        try:
            faults = request_faults(message, self.state.faults)
        except FaultError as exc:
            await self.send(error_event(str(exc), "invalid_value"))
            return
        options = message.get("response")
        requested = options.get("max_output_tokens") if isinstance(options, dict) else None
        cap = self.conversation.cap(requested)
        prompt = self.conversation.prompt_tokens()
        dialect = RealtimeResponse(self.conversation, prompt, capped=cap is not None)
        stats = self.state.stats
        stats.realtime_responses += 1
        tally = stats.begin(dialect.id, "realtime", self.conversation.model, prompt)
        length, finish = self.state.settings.output(cap)
        generation = Generation(self.state.settings, tally, dialect, faults, length, finish)
        channel = WsChannel(self.request, self.ws)
        task = asyncio.get_running_loop().create_task(self._respond(generation, dialect, channel))
        self.running = (task, channel)

    async def _respond(
        self, generation: Generation, dialect: RealtimeResponse, channel: WsChannel
    ) -> None:
        tally, faults = generation.tally, generation.faults
        outcome = "aborted"
        try:
            if faults.stall_before_first_byte:
                tally.fault("stall_before_first_byte")
                if not await pause(channel, faults.stall_before_first_byte):
                    return
            if self.state.settings.should_fail(faults):
                tally.fault("error_rate")
                outcome = "failed"
                await self.send(dialect.preamble()[0])
                for data in dialect.failed("simulated model server failure", 0):
                    await self.send(data)
                return
            outcome = await generation.stream(channel)
            if channel.cancelled and not channel.left and not self.ws.closed:
                await self.send(dialect.cancelled(tally.generated))
        except ConnectionError:
            pass  # the client left while we wrote; the outcome so far stands
        finally:
            self.conversation.texts.append("".join(dialect.text))
            tally.end(outcome)

    async def cancel(self) -> None:
        if self.running is None or self.running[0].done():
            await self.send(
                error_event("there is no active response", "response_cancel_not_active")
            )
            return
        task, channel = self.running
        channel.cancelled = True
        await task

    async def close(self) -> None:
        """The socket ended: the running response sees it and stops."""
        if self.running is not None:
            task, channel = self.running
            channel.left = True
            with contextlib.suppress(Exception):
                await task


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    ws = web.WebSocketResponse(autoping=True, max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    stats = state.stats
    stats.realtime_sessions += 1
    stats.realtime_active_sessions += 1
    session = Session(request, ws, state)
    try:
        await session.send(event("session.created", session=session.conversation.session()))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await session.on_text(message.data)
            elif message.type == WSMsgType.BINARY:
                await session.send(error_event("send events as text frames", "invalid_frame"))
    finally:
        await session.close()
        stats.realtime_active_sessions -= 1
    return ws
