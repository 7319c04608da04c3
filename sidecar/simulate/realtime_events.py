"""The OpenAI Realtime API, text only, free of I/O: a session's conversation and the server
events of one response (names and shapes as the `openai` package's `types/realtime` parse them).

A response's input tokens are the session's instructions and every conversation item so far,
the assistant's earlier answers included, counted as everywhere else (characters / 4).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.simulate.dialects import Finish
from sidecar.simulate.prompt import tokens_of_text

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_sim{next(_ids):08d}"


def event(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, "event_id": new_id("event"), **fields})


def error_event(message: str, code: str, kind: str = "invalid_request_error") -> bytes:
    return event("error", error={"type": kind, "code": code, "message": message, "param": None})


@dataclass(slots=True)
class Conversation:
    model: str
    instructions: str = ""
    max_output_tokens: int | str = "inf"
    texts: list[str] = field(default_factory=list)
    session_id: str = field(default_factory=lambda: new_id("sess"))

    def session(self) -> dict[str, Any]:
        return {
            "type": "realtime",
            "id": self.session_id,
            "object": "realtime.session",
            "model": self.model,
            "output_modalities": ["text"],
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
        }

    def update(self, session: object) -> str | None:
        """Apply a `session.update`; an error message if it is wrong."""
        if not isinstance(session, dict):
            return "session.update needs a session object"
        cap = session.get("max_output_tokens", self.max_output_tokens)
        if cap != "inf" and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            return "session.max_output_tokens must be a positive integer or 'inf'"
        instructions = session.get("instructions", self.instructions)
        if not isinstance(instructions, str):
            return "session.instructions must be a string"
        self.max_output_tokens, self.instructions = cap, instructions
        return None

    def add(self, item: object) -> dict[str, Any] | None:
        """Add a `conversation.item.create` item; the item as stored, None if it is not a
        message with text."""
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            return None
        content = item.get("content")
        if not isinstance(content, list):
            return None
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        if not texts or not all(isinstance(t, str) for t in texts):
            return None
        self.texts.append("".join(texts))  # type: ignore[arg-type]
        stored = {"object": "realtime.item", "status": "completed", **item}
        stored.setdefault("id", new_id("item"))
        stored.setdefault("type", "message")
        return stored

    def prompt_tokens(self) -> int:
        return tokens_of_text(len(self.instructions) + sum(len(t) for t in self.texts))

    def cap(self, requested: object) -> int | None:
        """The output cap of a response: its own `max_output_tokens`, else the session's."""
        for value in (requested, self.max_output_tokens):
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None


class RealtimeResponse:
    """One response's server events, as a `Dialect` (events are JSON text frames)."""

    def __init__(self, conversation: Conversation, prompt_tokens: int, capped: bool) -> None:
        self.conversation, self.prompt_tokens = conversation, prompt_tokens
        self.capped = capped  # a cap was asked for: reaching it ends the response "incomplete"
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self.text: list[str] = []

    def usage(self, generated: int) -> dict[str, Any]:
        return {
            "total_tokens": self.prompt_tokens + generated,
            "input_tokens": self.prompt_tokens,
            "output_tokens": generated,
            "input_token_details": {
                "text_tokens": self.prompt_tokens,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": 0,
            },
            "output_token_details": {"text_tokens": generated, "audio_tokens": 0},
        }

    def response(
        self, status: str, generated: int | None = None, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.response",
            "conversation_id": self.conversation.session_id,
            "status": status,
            "status_details": details,
            "output": [] if generated is None else [self._item("completed")],
            "output_modalities": ["text"],
            "max_output_tokens": self.conversation.max_output_tokens,
            "usage": None if generated is None else self.usage(generated),
        }

    def _item(self, status: str) -> dict[str, Any]:
        content = (
            [{"type": "output_text", "text": "".join(self.text)}] if status != "in_progress" else []
        )
        return {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def _located(self, kind: str, **fields: Any) -> bytes:
        return event(
            kind,
            response_id=self.id,
            item_id=self.item_id,
            output_index=0,
            content_index=0,
            **fields,
        )

    def preamble(self) -> list[bytes]:
        return [event("response.created", response=self.response("in_progress"))]

    def opening(self) -> list[bytes]:
        return [
            event(
                "response.output_item.added",
                response_id=self.id,
                output_index=0,
                item=self._item("in_progress"),
            ),
            event("conversation.item.added", item=self._item("in_progress")),
            self._located("response.content_part.added", part={"type": "text", "text": ""}),
        ]

    def delta(self, text: str, generated: int, finish: Finish | None) -> bytes:
        self.text.append(text)
        return self._located("response.output_text.delta", delta=text)

    def closing(self, generated: int, finish: Finish) -> list[bytes]:
        text = "".join(self.text)
        reached = self.capped and finish == "length"
        details = {"type": "incomplete", "reason": "max_output_tokens"} if reached else None
        status = "incomplete" if reached else "completed"
        return [
            self._located("response.output_text.done", text=text),
            self._located("response.content_part.done", part={"type": "text", "text": text}),
            event(
                "response.output_item.done",
                response_id=self.id,
                output_index=0,
                item=self._item("completed"),
            ),
            event("conversation.item.done", item=self._item("completed")),
            event("response.done", response=self.response(status, generated, details)),
        ]

    def cancelled(self, generated: int) -> bytes:
        details = {"type": "cancelled", "reason": "client_cancelled"}
        return event("response.done", response=self.response("cancelled", generated, details))

    def failed(self, message: str, generated: int) -> list[bytes]:
        error = {"type": "server_error", "code": "server_error", "message": message}
        details = {"type": "failed", "error": error}
        return [
            error_event(message, "server_error", "server_error"),
            event("response.done", response=self.response("failed", generated, details)),
        ]

    def stream_error(self, message: str, generated: int) -> list[bytes]:
        return self.failed(message, generated)

    def malformed(self) -> bytes:
        return b"{not json"
