"""Client WebSocket protocol v1 (DESIGN §3): parse client frames, encode sidecar frames.

The parser never raises: a bad frame becomes a `ProtocolError` event with a machine-readable
`code`, which the session turns into an `error` frame while the connection lives on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from sidecar.upstream.routes import PROTOCOL_PATHS

PROTOCOL_VERSION: Final = 1
MAX_ID_LENGTH: Final = 128
PATHS: Final = PROTOCOL_PATHS  # the streaming routes: chat, completions, responses, messages


@dataclass(frozen=True, slots=True)
class Generate:
    id: str
    body: dict[str, Any]
    path: str = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class Cancel:
    id: str


@dataclass(frozen=True, slots=True)
class Ack:
    id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Resume:
    id: str
    after_seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    t: Any


@dataclass(frozen=True, slots=True)
class Pong:
    t: Any


@dataclass(frozen=True, slots=True)
class ProtocolError:
    code: str
    message: str
    id: str | None = None


ClientEvent = Generate | Cancel | Ack | Resume | Ping | Pong | ProtocolError


def parse_client_frame(data: str | bytes) -> ClientEvent:
    """Turn one client text frame into an event; never raises."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ProtocolError("invalid_json", "frame is not valid JSON")
    if not isinstance(message, dict):
        return ProtocolError("invalid_message", "frame must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return Ping(message.get("t"))
    if kind == "pong":
        return Pong(message.get("t"))
    stream_id = message.get("id")
    known_id = (
        stream_id if isinstance(stream_id, str) and 0 < len(stream_id) <= MAX_ID_LENGTH else None
    )
    if not isinstance(kind, str):
        return ProtocolError("invalid_message", 'frame needs a string "type"', known_id)
    if kind not in _ID_MESSAGES:
        return ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}", known_id)
    if not isinstance(stream_id, str) or not stream_id:
        return ProtocolError("missing_id", f'"{kind}" needs a non-empty string "id"')
    if len(stream_id) > MAX_ID_LENGTH:
        return ProtocolError("invalid_id", f'"id" is longer than {MAX_ID_LENGTH} characters')
    return _ID_MESSAGES[kind](stream_id, message)


def _generate(stream_id: str, message: dict[str, Any]) -> ClientEvent:
    body = message.get("body")
    if not isinstance(body, dict):
        return ProtocolError("invalid_body", '"body" must be a JSON object', stream_id)
    path = message.get("path", "/v1/chat/completions")
    if not isinstance(path, str) or path not in PATHS:  # a list or object is not hashable
        return ProtocolError("invalid_path", f'"path" must be one of {sorted(PATHS)}', stream_id)
    chat_like = path in ("/v1/chat/completions", "/v1/messages")
    if chat_like and not isinstance(body.get("messages"), list):
        return ProtocolError("invalid_body", '"body.messages" must be a list', stream_id)
    if path == "/v1/completions" and "prompt" not in body:
        return ProtocolError("invalid_body", '"body.prompt" is required', stream_id)
    if path == "/v1/responses" and "input" not in body:
        return ProtocolError("invalid_body", '"body.input" is required', stream_id)
    return Generate(stream_id, body, path)


def _sequence(stream_id: str, message: dict[str, Any], key: str) -> int | ProtocolError:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return ProtocolError("invalid_seq", f'"{key}" must be a non-negative integer', stream_id)
    return value


def _ack(stream_id: str, message: dict[str, Any]) -> ClientEvent:
    seq = _sequence(stream_id, message, "seq")
    return seq if isinstance(seq, ProtocolError) else Ack(stream_id, seq)


def _resume(stream_id: str, message: dict[str, Any]) -> ClientEvent:
    seq = _sequence(stream_id, message, "after_seq")
    return seq if isinstance(seq, ProtocolError) else Resume(stream_id, seq)


_ID_MESSAGES: Final = {
    "generate": _generate,
    "cancel": lambda stream_id, _message: Cancel(stream_id),
    "ack": _ack,
    "resume": _resume,
}


# Encoders for sidecar → client frames. They return bytes ready for a text frame.


# Reconnect guidance in `hello`: clients back off from `base_ms` doubling up to `max_ms`, with
# full jitter, so a restarted sidecar is not met by every client at the same instant.
RECONNECT_HINT: Final = {"base_ms": 500, "max_ms": 30_000}


def hello(session: str, resume_token: str, heartbeat_s: float) -> bytes:
    return orjson.dumps(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "session": session,
            "resume_token": resume_token,
            "heartbeat_s": heartbeat_s,
            "reconnect": RECONNECT_HINT,
        }
    )


def start(stream_id: str, trace_id: str) -> bytes:
    return orjson.dumps({"type": "start", "id": stream_id, "trace_id": trace_id})


def delta(stream_id: str, seq: int, text: str) -> bytes:
    return orjson.dumps({"type": "delta", "id": stream_id, "seq": seq, "text": text})


def done(
    stream_id: str, finish_reason: str | None, prompt_tokens: int, completion_tokens: int
) -> bytes:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return orjson.dumps(
        {"type": "done", "id": stream_id, "finish_reason": finish_reason, "usage": usage}
    )


def error(
    stream_id: str | None, code: str, message: str, retry_after_ms: int | None = None
) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if stream_id is not None:
        frame["id"] = stream_id
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return orjson.dumps(frame)


def pong(t: Any) -> bytes:
    return orjson.dumps({"type": "pong", "t": t})


def ping(t: Any) -> bytes:
    return orjson.dumps({"type": "ping", "t": t})
