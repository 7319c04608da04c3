"""`POST /v1/messages`: the Anthropic Messages API's events and objects, free of I/O.

Shapes follow the `anthropic` SDK's types (checked by tests with the official client). The
stop reason is `max_tokens` when the output reached the request's cap, else `end_turn`.
"""

from __future__ import annotations

from typing import Any

from sidecar.simulate.dialects import MALFORMED, Finish, sse

STOP_REASONS: dict[Finish, str] = {"length": "max_tokens", "stop": "end_turn"}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}
    kind = kinds.get(status, "overloaded_error" if status == 503 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


class Messages:
    def __init__(self, request_id: str, model: str, prompt_tokens: int) -> None:
        self.model, self.prompt_tokens = model, prompt_tokens
        self.id = "msg_" + request_id

    def message(self, text: str | None, generated: int, finish: Finish | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [] if text is None else [{"type": "text", "text": text}],
            "stop_reason": STOP_REASONS[finish] if finish else None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.prompt_tokens,
                "output_tokens": generated,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def preamble(self) -> list[bytes]:
        return []

    def opening(self) -> list[bytes]:
        return [
            sse({"type": "message_start", "message": self.message(None, 0, None)}, "message_start"),
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            sse({"type": "ping"}, "ping"),
        ]

    def delta(self, text: str, generated: int, finish: Finish | None) -> bytes:
        data = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return sse(data, "content_block_delta")

    def closing(self, generated: int, finish: Finish) -> list[bytes]:
        delta = {"stop_reason": STOP_REASONS[finish], "stop_sequence": None}
        usage = {"output_tokens": generated}
        return [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]

    def stream_error(self, message: str, generated: int) -> list[bytes]:
        return [sse(anthropic_error(500, message), "error")]

    def malformed(self) -> bytes:
        return b"event: content_block_delta\n" + MALFORMED

    def whole(self, text: str, generated: int, finish: Finish) -> dict[str, Any]:
        return self.message(text, generated, finish)
