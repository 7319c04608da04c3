"""What each model server accepts and how it is cancelled (see docs/upstreams.md).

Pure request shaping: the sidecar forces streaming, asks for usage, and asks for continuous
usage only where the server supports it (OpenAI itself rejects unknown fields).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Flavour(enum.StrEnum):
    OPENAI = "openai"  # any OpenAI-compatible endpoint; no extensions
    VLLM = "vllm"
    SGLANG = "sglang"
    LLAMACPP = "llamacpp"
    OLLAMA = "ollama"
    TGI = "tgi"

    @property
    def continuous_usage(self) -> bool:
        return self in (Flavour.VLLM, Flavour.SGLANG)

    @property
    def abort_endpoint(self) -> bool:
        """SGLang polls for disconnects every few seconds; `/abort_request` stops it at once."""
        return self is Flavour.SGLANG


@dataclass(frozen=True, slots=True)
class ShapedRequest:
    body: dict[str, Any]
    client_wants_usage: bool  # else the injected usage chunk must not reach an HTTP client
    client_wants_stream: bool


def shape_request(body: dict[str, Any], flavour: Flavour, request_id: str) -> ShapedRequest:
    shaped = dict(body)
    client_wants_stream = bool(body.get("stream"))
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    client_wants_usage = bool(options.get("include_usage"))
    shaped["stream"] = True
    options["include_usage"] = True
    if flavour.continuous_usage:
        options["continuous_usage_stats"] = True
    shaped["stream_options"] = options
    if flavour is Flavour.SGLANG:
        shaped.setdefault("rid", request_id)
    return ShapedRequest(shaped, client_wants_usage, client_wants_stream)
