"""`POST /v1/responses`: the OpenAI Responses API's events and objects, free of I/O.

Shapes follow the `openai` package's `types/responses` (checked by tests with the official
client): every event has an `event:` line naming its `type` and a `sequence_number`.
"""

from __future__ import annotations

from typing import Any

from sidecar.simulate.dialects import MALFORMED, Finish, sse


class Responses:
    def __init__(
        self, request_id: str, model: str, created: int, prompt_tokens: int, body: dict[str, Any]
    ) -> None:
        self.model, self.created, self.prompt_tokens = model, created, prompt_tokens
        self.id = "resp_" + request_id
        self.item_id = "msg_" + request_id
        self.max_output_tokens = body.get("max_output_tokens")
        self.instructions = body.get("instructions")
        self.sequence = 0
        self.text: list[str] = []

    def usage(self, generated: int) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": generated,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens + generated,
        }

    def response(self, status: str, generated: int | None = None) -> dict[str, Any]:
        """The response object; a finished one carries the whole output text and the usage."""
        done = status == "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": [self._message("completed", "".join(self.text))] if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage(generated) if generated is not None else None,
            "user": None,
            "metadata": {},
        }

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [self._part(text)]
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    @staticmethod
    def _part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data, kind)

    def _located(self, kind: str, **fields: Any) -> bytes:
        return self._event(kind, item_id=self.item_id, output_index=0, content_index=0, **fields)

    def preamble(self) -> list[bytes]:
        return [
            self._event("response.created", response=self.response("in_progress")),
            self._event("response.in_progress", response=self.response("in_progress")),
        ]

    def opening(self) -> list[bytes]:
        return [
            self._event(
                "response.output_item.added",
                output_index=0,
                item=self._message("in_progress", None),
            ),
            self._located("response.content_part.added", part=self._part("")),
        ]

    def delta(self, text: str, generated: int, finish: Finish | None) -> bytes:
        self.text.append(text)
        return self._located("response.output_text.delta", delta=text, logprobs=[])

    def closing(self, generated: int, finish: Finish) -> list[bytes]:
        text = "".join(self.text)
        return [
            self._located("response.output_text.done", text=text, logprobs=[]),
            self._located("response.content_part.done", part=self._part(text)),
            self._event(
                "response.output_item.done", output_index=0, item=self._message("completed", text)
            ),
            self._event("response.completed", response=self.response("completed", generated)),
        ]

    def stream_error(self, message: str, generated: int) -> list[bytes]:
        failed = self.response("failed", generated)
        failed["error"] = {"code": "server_error", "message": message}
        return [
            self._event("error", code="server_error", message=message, param=None),
            self._event("response.failed", response=failed),
        ]

    def malformed(self) -> bytes:
        return b"event: response.output_text.delta\n" + MALFORMED

    def whole(self, text: str, generated: int, finish: Finish) -> dict[str, Any]:
        self.text = [text]
        return self.response("completed", generated)
