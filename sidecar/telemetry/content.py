"""Prompt and completion text as GenAI `gen_ai.input.messages` / `gen_ai.output.messages`.

Only used when content capture is switched on: text on spans is personal data, so it is opt-in.
Spans take no structured attributes, so the messages are JSON strings, as the conventions allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

TEXT_PARTS = frozenset({"text", "input_text", "output_text"})  # chat, Messages, Responses


def input_messages(path: str, body: Mapping[str, Any]) -> str:
    """The request's messages (chat, Messages), input items (Responses) or prompt
    (completions, embeddings) in the conventions' shape; system text as a `system` message."""
    messages: list[dict[str, Any]] = []
    system = body.get("system") if path.endswith("/messages") else body.get("instructions")
    if system:
        messages.append({"role": "system", "parts": _parts({"content": system})})
    if path.endswith(("/chat/completions", "/messages")):
        messages += _messages(body.get("messages"))
    elif path.endswith("/responses") and isinstance(body.get("input"), list):
        messages += _messages(body["input"])
    else:
        prompt = body.get("prompt", body.get("input"))
        prompts = prompt if isinstance(prompt, list) else [prompt]
        messages += [
            {"role": "user", "parts": [{"type": "text", "content": p}]}
            for p in prompts
            if isinstance(p, str)
        ]
    return orjson.dumps(messages).decode()


def _messages(raw: Any) -> list[dict[str, Any]]:
    messages = []
    for message in raw if isinstance(raw, list) else ():
        if isinstance(message, dict):
            role = message.get("role")
            role = role if isinstance(role, str) else "user"
            messages.append({"role": role, "parts": _parts(message)})
    return messages


def output_messages(text: str, finish_reason: str) -> str:
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": finish_reason,
    }
    return orjson.dumps([message]).decode()


def _parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") in TEXT_PARTS:
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, dict):  # images, audio: the kind only, never the payload
            parts.append({"type": str(part.get("type", "unknown"))})
    return parts
