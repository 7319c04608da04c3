"""How each API spells a generation, free of I/O: the bytes of its SSE events and its JSON bodies.

A dialect is told what happened (a token, the end, an error) and returns what to send; the
streaming shell (`generation.py`) decides when. `Finish` is "length" when the output reached
the request's cap and "stop" when the model ended on its own.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import orjson

Finish = Literal["length", "stop"]
MALFORMED = b"data: {not json\n\n"


class StreamDialect(Protocol):
    def preamble(self) -> list[bytes]:
        """Events sent right after the headers, before the model has produced anything."""

    def opening(self) -> list[bytes]:
        """Events sent just before the first token."""

    def delta(self, text: str, generated: int, finish: Finish | None) -> bytes:
        """One content chunk; `finish` is set on the last one."""

    def closing(self, generated: int, finish: Finish) -> list[bytes]:
        """Everything after the last token, including any end marker."""

    def stream_error(self, message: str, generated: int) -> list[bytes]:
        """An error reported inside a stream that has already started."""

    def malformed(self) -> bytes: ...


class Dialect(StreamDialect, Protocol):
    """An HTTP route's dialect: it can also answer in one piece."""

    def whole(self, text: str, generated: int, finish: Finish) -> dict[str, Any]:
        """The non-streaming answer."""


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    if status == 429:
        kind = "rate_limit_exceeded"
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


class ChatCompletions:
    """`/v1/chat/completions` (chat) and `/v1/completions` (legacy text), as vLLM streams them."""

    def __init__(
        self,
        request_id: str,
        model: str,
        created: int,
        prompt_tokens: int,
        body: dict[str, Any],
        chat: bool,
    ) -> None:
        self.chat, self.model, self.created, self.prompt_tokens = (
            chat,
            model,
            created,
            prompt_tokens,
        )
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.object = "chat.completion.chunk" if chat else "text_completion"
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.continuous_usage = bool(options.get("continuous_usage_stats"))

    def usage(self, generated: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": self.prompt_tokens + generated,
        }

    def preamble(self) -> list[bytes]:
        return []

    def opening(self) -> list[bytes]:
        if not self.chat:
            return []
        return [
            self._chunk(
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
                0,
            )
        ]

    def delta(self, text: str, generated: int, finish: Finish | None) -> bytes:
        if self.chat:
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
        return self._chunk(choice, generated)

    def closing(self, generated: int, finish: Finish) -> list[bytes]:
        events = []
        if self.include_usage:
            events.append(sse(self._envelope([], self.usage(generated))))
        events.append(b"data: [DONE]\n\n")
        return events

    def stream_error(self, message: str, generated: int) -> list[bytes]:
        # vLLM: a `data: {"error": ...}` event, then the stream ends as usual.
        return [sse(openai_error(500, message)), b"data: [DONE]\n\n"]

    def malformed(self) -> bytes:
        return MALFORMED

    def whole(self, text: str, generated: int, finish: Finish) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(generated),
        }

    def _chunk(self, choice: dict[str, Any], generated: int) -> bytes:
        usage = self.usage(generated) if self.continuous_usage else None
        return sse(self._envelope([choice], usage))

    def _envelope(self, choices: list[Any], usage: dict[str, int] | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk
