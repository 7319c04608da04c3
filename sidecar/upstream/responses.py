"""`/v1/responses`: the OpenAI Responses API's stream, read into the relay's chunks.

Text deltas (`response.output_text.delta`) are the content; the usage, the finish and the end
come with the terminal event (`response.completed`, or `response.incomplete` when the output hit
`max_output_tokens`), whose `response` object is also the whole answer for a client that did not
ask to stream. An `error` event or `response.failed` fails the stream. Every event names its
`type`, which is also its SSE `event:` line (kept for the client).
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
    UpstreamFailure,
    Usage,
    UsageDetails,
    error_message,
    json_object,
)

TERMINAL = frozenset({"response.completed", "response.incomplete"})
# `incomplete_details.reason` in the chat vocabulary the protocol's `done` frame speaks.
INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesReader:
    __slots__ = ("event", "final", "sequence")

    def __init__(self) -> None:
        self.event: bytes | None = None  # the `type` of the last event read
        self.final: dict[str, Any] | None = None  # the terminal event's `response`
        self.sequence = -1  # the last `sequence_number` seen

    def read(self, payload: str) -> list[Chunk]:
        event = json_object(payload)
        if isinstance(event, Malformed):
            self.event = None
            return [event]
        kind = event.get("type")
        self.event = kind.encode() if isinstance(kind, str) else None
        if kind == "response.failed":
            response = event.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            return [UpstreamFailure(error_message(error) if error else "response.failed")]
        if kind == "error":
            return [UpstreamFailure(error_message(event))]
        # Failures are not relayed (the sidecar's own error event takes their number).
        sequence = event.get("sequence_number")
        if isinstance(sequence, int):
            self.sequence = sequence
        if kind == "response.output_text.delta":
            delta = event.get("delta")
            return [Content(delta)] if isinstance(delta, str) and delta else []
        if kind in TERMINAL:
            return self._terminal(kind, event.get("response"))
        return []

    def _terminal(self, kind: str, response: Any) -> list[Chunk]:
        if not isinstance(response, dict):
            return [Malformed(f"{kind} without a response object")]
        self.final = response
        chunks: list[Chunk] = []
        usage = response.get("usage")
        if isinstance(usage, dict):
            chunks.extend(_usage(usage))
        reason = "stop"
        if kind == "response.incomplete":
            details = response.get("incomplete_details")
            raw = details.get("reason") if isinstance(details, dict) else None
            reason = INCOMPLETE_REASONS.get(raw, raw) if isinstance(raw, str) else "length"
        chunks += [Finish(reason), END]
        return chunks

    def answer(self, account: StreamAccount, text: str) -> bytes:
        """The response object of the terminal event, as a non-streaming request gets it."""
        return orjson.dumps(self.final)

    def error_event(self, code: str, message: str, status: int) -> bytes:
        """An `error` event, as the Responses API reports a failure inside a stream."""
        self.sequence += 1
        event = {
            "type": "error",
            "code": code,
            "message": message,
            "param": None,
            "sequence_number": self.sequence,
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


def _usage(usage: dict[str, Any]) -> list[Chunk]:
    prompt, output = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(output, int):
        return []
    chunks: list[Chunk] = [Usage(prompt, output, final=True)]
    cached = _detail(usage, "input_tokens_details", "cached_tokens")
    reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
    if cached is not None or reasoning is not None:
        chunks.append(UsageDetails(cached, reasoning))
    return chunks


def _detail(usage: dict[str, Any], group: str, key: str) -> int | None:
    details = usage.get(group)
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
