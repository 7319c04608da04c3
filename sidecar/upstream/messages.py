"""`/v1/messages`: the Anthropic Messages API's stream (as Anthropic and vLLM serve it), read
into the relay's chunks.

`message_start` carries the prompt's usage, `content_block_delta` the text, `message_delta` the
stop reason and the output's usage, `message_stop` the end; an `error` event fails the stream.
The prompt counted is the whole input: Anthropic reports the tokens read from and written to its
prompt cache apart from `input_tokens`. For a client that did not ask to stream, the message is
rebuilt from the events (text, tool-use and thinking blocks).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.accounting.stream import StreamAccount
from sidecar.upstream.sse import (
    END,
    Chunk,
    Content,
    Finish,
    Malformed,
    PromptUsage,
    UpstreamFailure,
    Usage,
    UsageDetails,
    error_message,
    json_object,
)

# Stop reasons in the chat vocabulary the protocol's `done` frame and the ledger speak.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
# Which field of a content block each kind of delta extends.
DELTA_FIELDS = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
}


class MessagesReader:
    __slots__ = ("blocks", "event", "message", "prompt", "whole")

    def __init__(self, whole: bool = False) -> None:
        self.whole = whole  # keep what it takes to rebuild the message
        self.event: bytes | None = None  # the `type` of the last event read
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.prompt: int | None = None

    def read(self, payload: str) -> list[Chunk]:
        event = json_object(payload)
        if isinstance(event, Malformed):
            self.event = None
            return [event]
        kind = event.get("type")
        self.event = kind.encode() if isinstance(kind, str) else None
        match kind:
            case "content_block_delta":
                return self._delta(event.get("index"), event.get("delta"))
            case "message_start":
                return self._start(event.get("message"))
            case "content_block_start":
                block = event.get("content_block")
                if self.whole and isinstance(block, dict):
                    self.blocks[_index(event.get("index"))] = dict(block)
                return []
            case "message_delta":
                return self._message_delta(event.get("delta"), event.get("usage"))
            case "message_stop":
                return [END]
            case "error":
                return [UpstreamFailure(error_message(event.get("error")))]
        return []  # ping, content_block_stop, and whatever a newer API adds

    def _delta(self, index: Any, delta: Any) -> list[Chunk]:
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if self.whole:
            field = DELTA_FIELDS.get(kind) if isinstance(kind, str) else None
            value = delta.get(field) if field else None
            if field and isinstance(value, str):
                block = self.blocks.setdefault(_index(index), {"type": "text", "text": ""})
                block[field] = block.get(field, "") + value
        if kind == "text_delta":
            text = delta.get("text")
            return [Content(text)] if isinstance(text, str) and text else []
        return []

    def _start(self, message: Any) -> list[Chunk]:
        if not isinstance(message, dict):
            return []
        if self.whole:
            self.message = message
        usage = message.get("usage")
        if not isinstance(usage, dict):
            return []
        prompt = _prompt(usage)
        if prompt is None:
            return []
        self.prompt = prompt
        cached = usage.get("cache_read_input_tokens")
        chunks: list[Chunk] = [PromptUsage(prompt)]
        if isinstance(cached, int):
            chunks.append(UsageDetails(cached, None))
        return chunks

    def _message_delta(self, delta: Any, usage: Any) -> list[Chunk]:
        chunks: list[Chunk] = []
        if isinstance(delta, dict):
            if self.whole:
                self.message.update(delta)
            reason = delta.get("stop_reason")
            if isinstance(reason, str):
                chunks.append(Finish(STOP_REASONS.get(reason, reason)))
        if isinstance(usage, dict):
            if self.whole:
                self.message["usage"] = {**self.message.get("usage", {}), **usage}
            prompt = _prompt(usage)  # vLLM repeats it here; Anthropic gives it in the start
            if prompt is not None:
                self.prompt = prompt
            output = usage.get("output_tokens")
            if isinstance(output, int) and self.prompt is not None:
                chunks.append(Usage(self.prompt, output, final=True))
        return chunks

    def answer(self, account: StreamAccount, text: str) -> bytes:
        """The message, as a non-streaming request gets it."""
        content = []
        for _, block in sorted(self.blocks.items()):
            partial = block.pop("partial_json", None)
            if partial is not None:
                try:
                    block["input"] = orjson.loads(partial) if partial else {}
                except orjson.JSONDecodeError:
                    block["input"] = {}
            content.append(block)
        return orjson.dumps({**self.message, "content": content})

    def error_event(self, code: str, message: str, status: int) -> bytes:
        """An `error` event, as Anthropic reports a failure inside a stream (its SDK raises)."""
        kind = "overloaded_error" if status in (503, 529) else "api_error"
        error = {"type": "error", "error": {"type": kind, "message": message, "code": code}}
        return b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"


def _prompt(usage: dict[str, Any]) -> int | None:
    """Every input token: uncached, written to the cache and read from it."""
    tokens = usage.get("input_tokens")
    if not isinstance(tokens, int):
        return None
    for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        extra = usage.get(key)
        if isinstance(extra, int):
            tokens += extra
    return tokens


def _index(value: Any) -> int:
    return value if isinstance(value, int) else 0
