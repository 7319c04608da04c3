"""`/v1/embeddings`: one JSON answer, not a stream; its usage is the request's input tokens.

`WholeBody` stands in for the SSE decoder: the relay's pump reads the body and hands the whole
of it to `EmbeddingsReader.read` at the end, so an embeddings request goes through the same
lifecycle (admission, one ledger row, span, outcome) as a stream. The answer is relayed as the
upstream sent it.
"""

from __future__ import annotations

from sidecar.accounting.stream import StreamAccount
from sidecar.errors import UpstreamError
from sidecar.upstream.chat import ChatReader
from sidecar.upstream.sse import (
    END,
    Chunk,
    Malformed,
    UpstreamFailure,
    Usage,
    error_message,
    json_object,
)

MAX_BODY = 256 * 1024 * 1024  # 2,048 inputs × 3,072 dimensions as JSON floats fit


class WholeBody:
    """A decoder that returns the body as one payload once it has all arrived."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[str]:
        self._size += len(chunk)
        if self._size > MAX_BODY:
            raise UpstreamError(
                "upstream_error", f"model server's answer is larger than {MAX_BODY >> 20} MiB"
            )
        self._parts.append(chunk)
        return []

    def flush(self) -> list[str]:
        body, self._parts = b"".join(self._parts), []
        return [body.decode("utf-8", "replace")] if body else []


class EmbeddingsReader:
    __slots__ = ("body",)

    event: bytes | None = None

    def __init__(self) -> None:
        self.body = b""

    def read(self, payload: str) -> list[Chunk]:
        answer = json_object(payload)
        if isinstance(answer, Malformed):
            return [answer]
        if "error" in answer and "data" not in answer:
            return [UpstreamFailure(error_message(answer["error"]))]
        self.body = payload.encode()
        usage = answer.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(prompt, int) and not isinstance(prompt, bool):
            return [Usage(prompt, 0, final=True), END]
        return [END]  # no usage: the prompt is estimated from its characters

    def answer(self, account: StreamAccount, text: str) -> bytes:
        return self.body

    def error_event(self, code: str, message: str, status: int) -> bytes:
        return ChatReader().error_event(code, message, status)  # never sent: no stream starts
