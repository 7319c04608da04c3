"""`/v1/chat/completions` and `/v1/completions`: the reader of their streams (`read_chunk`, in
sidecar.upstream.sse), the answer rebuilt for a client that did not ask to stream, and the error
event a streaming client gets when its answer ends early."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.accounting.stream import StreamAccount
from sidecar.upstream.sse import read_chunk


class ChatReader:
    """Stateless: the chat hot path calls `read_chunk` directly (see `Route.reader`)."""

    __slots__ = ()

    event: bytes | None = None  # chat events have no `event:` line
    read = staticmethod(read_chunk)

    def answer(self, account: StreamAccount, text: str) -> bytes:
        """A non-streaming answer rebuilt from the stream the sidecar read."""
        chat = account.path.endswith("/chat/completions")
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": account.finish_reason,
            "logprobs": None,
        }
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return orjson.dumps(
            {
                "id": ("chatcmpl-" if chat else "cmpl-") + account.stream_id,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(account.started_at),
                "model": account.model,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": account.prompt_tokens,
                    "completion_tokens": account.generated_tokens,
                    "total_tokens": account.prompt_tokens + account.generated_tokens,
                },
            }
        )

    def error_event(self, code: str, message: str, status: int) -> bytes:
        """As OpenAI sends an error inside a stream, and as its clients raise it."""
        event = orjson.dumps({"error": {"message": message, "type": code, "code": status}})
        return b"data: " + event + b"\n\n"
