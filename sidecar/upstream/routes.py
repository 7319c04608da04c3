"""The routes relayed and accounted as streams (DESIGN §8), each with its dialect: how its
request is shaped for the upstream, how its events are read, how a non-streaming answer is
rebuilt and how a failure is told to a client whose stream had started.

What the sidecar adds to a request it strips from the answer, and nothing else: chat and
completions get `stream_options.include_usage` (and continuous usage on vLLM and SGLang); the
Responses and Messages APIs report usage in their own events, so they get only `stream: true`
(they reject `stream_options`); embeddings go as sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sidecar.accounting.stream import StreamAccount
from sidecar.upstream.chat import ChatReader
from sidecar.upstream.embeddings import EmbeddingsReader, WholeBody
from sidecar.upstream.flavour import Flavour, ShapedRequest, shape_request
from sidecar.upstream.messages import MessagesReader
from sidecar.upstream.responses import ResponsesReader
from sidecar.upstream.sse import Chunk, Decoder, SSEDecoder


class Reader(Protocol):
    """One stream's reader of its upstream's events (some keep state: one per stream)."""

    @property
    def event(self) -> bytes | None:
        """The SSE `event:` name of the payload read last (None: the API sends none)."""

    def read(self, payload: str) -> list[Chunk]:
        """One event's `data:` payload as the relay's chunks; never raises."""

    def answer(self, account: StreamAccount, text: str) -> bytes:
        """The JSON answer for a client that did not ask to stream (`text`: the deltas)."""

    def error_event(self, code: str, message: str, status: int) -> bytes:
        """The SSE event that tells a streaming client its answer ended early."""


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # a bounded label value (`sidecar report --by route` shows the path)
    path: str
    streams: bool  # the upstream answers with server-sent events (else with one JSON body)
    protocol: bool  # protocol v1's `generate` may name it
    named_events: bool  # its events carry an `event:` line (relayed; chat's have none)
    reader: Callable[[bool], Reader]  # given "the client wants one whole answer"
    shape: Callable[[dict[str, Any], Flavour, str], ShapedRequest]

    def decoder(self) -> Decoder:
        return SSEDecoder() if self.streams else WholeBody()


def force_stream(body: dict[str, Any], flavour: Flavour, request_id: str) -> ShapedRequest:
    """Stream from the upstream whatever the client asked; add nothing else."""
    return ShapedRequest({**body, "stream": True}, True, bool(body.get("stream")))


def as_sent(body: dict[str, Any], flavour: Flavour, request_id: str) -> ShapedRequest:
    return ShapedRequest(body, True, False)


_CHAT_READER = ChatReader()


def _chat(whole: bool) -> Reader:
    return _CHAT_READER  # stateless: shared


def _responses(whole: bool) -> Reader:
    return ResponsesReader()  # keeps only the terminal response object, whole or not


def _embeddings(whole: bool) -> Reader:
    return EmbeddingsReader()


ROUTES: Final = {
    route.path: route
    for route in (
        Route("chat", "/v1/chat/completions", True, True, False, _chat, shape_request),
        Route("completions", "/v1/completions", True, True, False, _chat, shape_request),
        Route("responses", "/v1/responses", True, True, True, _responses, force_stream),
        Route("messages", "/v1/messages", True, True, True, MessagesReader, force_stream),
        Route("embeddings", "/v1/embeddings", False, False, False, _embeddings, as_sent),
    )
}
# Realtime sessions (sidecar.ingress.realtime) account each response as a stream of this route;
# it is not an HTTP route.
REALTIME: Final = Route("realtime", "/v1/realtime", True, False, False, _chat, as_sent)
STREAM_ROUTES: Final = {**ROUTES, REALTIME.path: REALTIME}
PROTOCOL_PATHS: Final = frozenset(path for path, route in ROUTES.items() if route.protocol)
