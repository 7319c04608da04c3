"""Server-sent events from an OpenAI-compatible upstream: a byte-level decoder and a chunk reader.

`SSEDecoder` has the shape of httpx's `LineDecoder`: `feed(bytes)` returns the complete events,
`flush()` the last one. Chunk boundaries may fall anywhere (inside a line, a CRLF pair or a UTF-8
sequence). `read_chunk` turns one `data:` payload into a typed event; it never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson


class Decoder(Protocol):
    """Upstream bytes → event payloads (`SSEDecoder`, or one whole JSON body)."""

    def feed(self, chunk: bytes) -> list[str]: ...

    def flush(self) -> list[str]: ...


class SSEDecoder:
    """Incremental SSE parser: only `data` fields matter to us; comments (`:`) are dropped."""

    __slots__ = ("_buffer", "_data", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[str]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n pair split across two chunks
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        events: list[str] = []
        for line in lines:
            self._line(line, events)
        return events

    def flush(self) -> list[str]:
        events: list[str] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data).decode("utf-8", "replace"))
                self._data = []
            return
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # Other fields (event, id, retry) and comments carry nothing we relay.


@dataclass(frozen=True, slots=True)
class Content:
    """A piece of generated text (one upstream delta; a chunk is not always one token)."""

    text: str
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token totals; `final` when this is the usage-only chunk before `[DONE]`."""

    prompt_tokens: int
    completion_tokens: int
    final: bool


@dataclass(frozen=True, slots=True)
class PromptUsage:
    """The prompt's token count, reported before any output (Anthropic's `message_start`)."""

    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class UsageDetails:
    """Parts of the usage some APIs break out: prompt tokens served from a cache, output
    tokens spent on reasoning (None: not reported)."""

    cached_prompt_tokens: int | None
    reasoning_tokens: int | None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The `[DONE]` sentinel."""


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    message: str


@dataclass(frozen=True, slots=True)
class Malformed:
    payload: str


Chunk = (
    Content | Usage | Finish | StreamEnd | UpstreamFailure | Malformed | PromptUsage | UsageDetails
)

END = StreamEnd()


def read_chunk(payload: str) -> list[Chunk]:
    """Interpret one `data:` payload of a chat or legacy completions stream."""
    if payload == "[DONE]":
        return [END]
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return [Malformed(payload[:200])]
    if not isinstance(chunk, dict):
        return [Malformed(payload[:200])]
    if "error" in chunk and "choices" not in chunk:
        return [UpstreamFailure(error_message(chunk["error"]))]
    events: list[Chunk] = []
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices:
        choice = choices[0]
        if isinstance(choice, dict):
            text = _choice_text(choice)
            reason = choice.get("finish_reason")
            reason = reason if isinstance(reason, str) else None
            if text:
                events.append(Content(text, reason))
            elif reason:
                events.append(Finish(reason))
    usage = _usage(chunk.get("usage"))
    if usage is not None:
        prompt, completion = usage
        events.append(Usage(prompt, completion, final=not choices))
    return events


def json_object(payload: str) -> dict[str, Any] | Malformed:
    """A payload that must be a JSON object (the Responses, Messages and embeddings readers)."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Malformed(payload[:200])
    return value if isinstance(value, dict) else Malformed(payload[:200])


def _choice_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _usage(usage: Any) -> tuple[int, int] | None:
    # Tolerate `usage: null`, `{}` and partial objects on intermediate chunks.
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str):
            return message[:500]
    return str(error)[:500]
