"""The OpenAI Realtime API's server events, read for accounting (free of I/O; never raises).

A realtime session is one WebSocket carrying many responses. What the sidecar needs of each is
its start (`response.created`), its text as it streams (`response.output_text.delta`, or the
transcript of its audio, `response.output_audio_transcript.delta`; the beta API's names
`response.text.delta` and `response.audio_transcript.delta` too), its audio chunks (relayed,
not counted: their tokens come with the usage) and its end (`response.done`: status, usage with
text and audio tokens apart). Every other event is relayed without a look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sidecar.errors import ConfigError
from sidecar.upstream.sse import Malformed, json_object

TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.output_audio_transcript.delta",
        "response.text.delta",
        "response.audio_transcript.delta",
    }
)
AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})
# `response.done` statuses in the chat vocabulary of the ledger's finish reason.
FINISH = {"completed": "stop", "incomplete": "length"}


@dataclass(frozen=True, slots=True)
class RealtimeUsage:
    input_tokens: int
    output_tokens: int
    input_audio: int | None = None
    output_audio: int | None = None
    cached: int | None = None


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseText:
    response_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ResponseAudio:
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str  # completed, incomplete, cancelled, failed
    usage: RealtimeUsage | None
    finish_reason: str | None
    error: str | None  # why it failed


RealtimeEvent = ResponseCreated | ResponseText | ResponseAudio | ResponseDone | Malformed


def read_server_event(data: str | bytes) -> RealtimeEvent | None:
    """One server event; None when it says nothing the accounting needs."""
    event = json_object(data if isinstance(data, str) else data.decode("utf-8", "replace"))
    if isinstance(event, Malformed):
        return event
    kind = event.get("type")
    if kind in TEXT_DELTAS:
        response_id, delta = event.get("response_id"), event.get("delta")
        if isinstance(response_id, str) and isinstance(delta, str) and delta:
            return ResponseText(response_id, delta)
        return None
    if kind in AUDIO_DELTAS:
        response_id = event.get("response_id")
        return ResponseAudio(response_id) if isinstance(response_id, str) else None
    if kind not in ("response.created", "response.done"):
        return None
    response = event.get("response")
    response_id = response.get("id") if isinstance(response, dict) else None
    if not isinstance(response, dict) or not isinstance(response_id, str):
        return Malformed(f"{kind} without a response id")
    if kind == "response.created":
        return ResponseCreated(response_id)
    status = response.get("status")
    status = status if isinstance(status, str) else "completed"
    return ResponseDone(
        response_id, status, _usage(response.get("usage")), FINISH.get(status), _error(response)
    )


def client_text(data: str | bytes) -> tuple[str, int] | None:
    """What a client event adds to the conversation's text, for a prompt estimate when a
    response ends without usage: `("item", characters)` of a `conversation.item.create`,
    `("instructions", characters)` of a `session.update` that sets them; else None."""
    # A cheap test first: clients send audio chunks many times a second.
    probe = data if isinstance(data, str) else data.decode("utf-8", "replace")
    if '"conversation.item.create"' not in probe and '"session.update"' not in probe:
        return None
    event = json_object(probe)
    if isinstance(event, Malformed):
        return None
    if event.get("type") == "session.update":
        session = event.get("session")
        instructions = session.get("instructions") if isinstance(session, dict) else None
        return ("instructions", len(instructions)) if isinstance(instructions, str) else None
    item = event.get("item")
    content = item.get("content") if isinstance(item, dict) else None
    if event.get("type") != "conversation.item.create" or not isinstance(content, list):
        return None
    texts = [part.get("text") for part in content if isinstance(part, dict)]
    return "item", sum(len(text) for text in texts if isinstance(text, str))


SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
HTTP_SCHEMES = {"ws": "http", "wss": "https"}


def upstream_urls(upstream: str, realtime: str | None) -> tuple[str, str]:
    """The model server's HTTP base URL and its realtime WebSocket base URL, from `--upstream`
    (http(s):// or ws(s)://: the same server either way) and `--realtime-upstream` (another
    server for realtime sessions)."""
    parts = urlsplit(upstream)
    scheme = HTTP_SCHEMES.get(parts.scheme, parts.scheme)
    http = urlunsplit(parts._replace(scheme=scheme))
    if realtime is None:
        ws = urlunsplit(parts._replace(scheme=SCHEMES.get(parts.scheme, parts.scheme)))
        return http, ws.rstrip("/")
    if urlsplit(realtime).scheme not in ("ws", "wss") or not urlsplit(realtime).hostname:
        raise ConfigError(
            f"--realtime-upstream {realtime}: must be ws(s)://host[:port][/prefix], the model "
            "server's realtime WebSocket (its /v1/realtime is appended)"
        )
    return http, realtime.rstrip("/")


def _usage(usage: Any) -> RealtimeUsage | None:
    if not isinstance(usage, dict):
        return None
    prompt, output = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(output, int):
        return None
    inputs, outputs = usage.get("input_token_details"), usage.get("output_token_details")
    return RealtimeUsage(
        prompt,
        output,
        _count(inputs, "audio_tokens"),
        _count(outputs, "audio_tokens"),
        _count(inputs, "cached_tokens"),
    )


def _count(details: Any, key: str) -> int | None:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(response: dict[str, Any]) -> str | None:
    details = response.get("status_details")
    error = details.get("error") if isinstance(details, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:500]
    return None
