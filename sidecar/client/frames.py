"""What one sidecar frame (other than `hello`) does to the client's streams: free of I/O.

Returns the frames to send in reply (a `pong`, or a `cancel` after a sequence gap). Frames for
an id the client no longer runs (a cancelled answer's late deltas, its `done` or `error`) and
frame types of later protocol versions are ignored.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any, Protocol

from sidecar.client.errors import ClientError
from sidecar.client.stream import Result, Stream, Usage


class Streams(Protocol):
    streams: dict[str, Stream]

    @property
    def connection_errors(self) -> MutableSequence[ClientError]: ...

    def forget(self, stream: Stream) -> None: ...


def apply_frame(owner: Streams, frame: dict[str, Any]) -> list[dict[str, Any]]:
    kind = frame.get("type")
    stream_id = frame.get("id")
    stream = owner.streams.get(stream_id) if isinstance(stream_id, str) else None
    if kind == "ping":
        return [{"type": "pong", "t": frame.get("t")}]
    if kind == "error":
        error = ClientError(
            str(frame.get("code", "unknown")),
            str(frame.get("message", "the sidecar reported an error")),
            stream_id if isinstance(stream_id, str) else None,
        )
        if stream is not None:
            owner.forget(stream)
            stream.fail(error)
        elif stream_id is None:  # about the connection: rate_limited, resume_expired, ...
            owner.connection_errors.append(error)
        return []
    if stream is None:
        return []
    if kind == "delta":
        seq, text = frame.get("seq"), frame.get("text")
        if isinstance(seq, int) and isinstance(text, str):
            gap = stream.push(seq, text)
            if gap is not None:
                owner.forget(stream)
                stream.fail(gap)
                return [{"type": "cancel", "id": stream.id}]
    elif kind == "start":
        trace_id = frame.get("trace_id")
        stream.trace_id = trace_id if isinstance(trace_id, str) else None
    elif kind == "done":
        owner.forget(stream)
        stream.finish(Result(frame.get("finish_reason"), _usage(frame.get("usage"))))
    return []


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return Usage(prompt, completion)
    return None
